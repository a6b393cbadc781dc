"""A results file that cannot be written ends the run in one line and keeps what it has."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

RUN = [
    sys.executable,
    "-m",
    "harness.cli",
    "run",
    "-m",
    "perceptron",
    "-b",
    "1,2,4",
    "--isolation",
    "none",
    "--max-time",
    "0.01",
    "--warmup-time",
    "0.01",
    "-q",
]


def test_a_full_disk_is_one_line_and_no_traceback(tmp_path):
    done = subprocess.run([*RUN, "--out", "/dev/full"], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "harness: error: cannot write results to /dev/full: No space left on device; "
        "no case was written"
    ]


def test_a_disk_filling_mid_run_keeps_the_cases_written_before(tmp_path):
    full = tmp_path / "full.jsonl"
    subprocess.run([*RUN, "--out", str(full)], check=True, capture_output=True)
    header, first, second, _ = full.read_bytes().splitlines(keepends=True)
    room = len(header) + len(first) + len(second) // 2  # the second case cannot fit

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (room, room))

    out = tmp_path / "cut.jsonl"
    done = subprocess.run(
        [*RUN, "--out", str(out)], capture_output=True, text=True, preexec_fn=small_disk
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"harness: error: cannot write results to {out}: File too large; what was written "
        f"before it (1 case) is kept; make room and finish the run with --resume {out}"
    ]
    lines = out.read_bytes().splitlines()
    assert json.loads(lines[1])["batch_size"] == 1 and json.loads(lines[1])["status"] == "ok"
