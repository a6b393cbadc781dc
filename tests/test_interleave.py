"""`harness ab` on this repository's models: pairs of processes timed turn about, their
paired statistics, sessions in the results files, sides that fail."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import harness_plugins
from harness.abtest.pair import MIN_TURNS, InterleaveError, shared_cores
from harness.analysis import compare, sequential, significance
from harness.cli import main
from harness.store.record import CaseRecord, RunHeader
from harness.store.results import iter_records
from tests.conftest import TOY_PLUGIN

PLUGINS = Path(harness_plugins.__file__).parent
ROOT = PLUGINS.parent
FAST = [
    "-m",
    "calibration_matmul",
    "-b",
    "4",
    "-d",
    "N=32",
    "-d",
    "WORK=4",
    "--pair-time",
    "0.05",
    "--time",
    "60",
]


@pytest.fixture(autouse=True)
def _in_the_checkout(monkeypatch):
    """Revisions are the current directory's checkout: run there, as a user would."""
    monkeypatch.chdir(ROOT)


def _turns(rng, ratio: float, count: int = 50, drift: float = 0.1, noise: float = 0.05):
    """Two sides' turns on a machine whose speed wanders by ``drift`` from turn to turn."""
    speed = np.exp(rng.normal(0.0, drift, count))
    base = [list(s * np.exp(rng.normal(0.0, noise, 9))) for s in speed]
    cand = [list(s * ratio * np.exp(rng.normal(0.0, noise, 9))) for s in speed]
    return base, cand


def test_shift_of_turns_sees_a_5_percent_change_through_10_percent_drift():
    rng = np.random.default_rng(4)
    found = [significance.shift_of_turns(*_turns(rng, 1.05)) for _ in range(200)]
    assert sum(e.p_value <= 0.05 and e.ci_low > 1.0 for e in found) == 200
    assert sum(e.ci_low <= 1.05 <= e.ci_high for e in found) >= 180


def test_shift_of_turns_false_alarms_at_about_alpha():
    rng = np.random.default_rng(5)
    alarms = sum(
        significance.shift_of_turns(*_turns(rng, 1.0)).p_value <= 0.05 for _ in range(1000)
    )
    assert 20 <= alarms <= 80


def test_the_paired_interval_does_not_widen_with_the_machines_drift():
    def widths(drift: float) -> tuple[float, float]:
        base, cand = _turns(np.random.default_rng(6), 1.05, drift=drift)
        paired = significance.shift_of_turns(base, cand)
        pooled = significance.shift([s for t in base for s in t], [s for t in cand for s in t])
        return paired.ci_high - paired.ci_low, pooled.ci_high - pooled.ci_low

    steady, drifting = widths(0.0), widths(0.3)
    assert drifting[0] < 1.2 * steady[0]
    assert drifting[1] > 3 * drifting[0]  # pooled samples carry the drift


def _session_rows(turns_b, turns_c, session="s1", pair=None):
    def row(turns):
        return {
            "latency.samples": [s for t in turns for s in t],
            "batch_size": 4,
            "interleaved.session": session,
            "interleaved.pair": pair,
            "interleaved.turns": [len(t) for t in turns],
        }

    return [row(turns_b)], [row(turns_c)]


def test_a_one_pair_session_of_an_earlier_harness_is_judged_turn_by_turn():
    rng = np.random.default_rng(7)
    base, cand = _turns(rng, 1.05)
    assert compare.estimate(*_session_rows(base, cand), "latency") == significance.shift_of_turns(
        base, cand
    )
    assert compare.interleaved_turns(*_session_rows(base, cand[:-1]), "latency") is None
    throughput = compare.interleaved_turns(*_session_rows(base, cand), "throughput")
    assert throughput[0][0] == pytest.approx([4 / s for s in base[0]])


def test_pairs_of_a_session_are_judged_by_the_confidence_sequence_in_pair_order():
    rng = np.random.default_rng(8)
    pairs = [_turns(rng, 1.05 * s) for s in np.exp(rng.normal(0, 0.01, 6))]
    rows = [_session_rows(b, c, pair=i) for i, (b, c) in enumerate(pairs)]
    base, cand = [r[0][0] for r in rows], [r[1][0] for r in rows]
    shuffled = compare.estimate(base[::-1], cand[::-1], "latency")
    est = compare.estimate(base, cand, "latency")
    assert est == shuffled and est.method == "pairs"
    logs = [np.log(significance.shift_of_turns(b, c).ratio) for b, c in pairs]
    assert est.ratio == pytest.approx(sequential.look(logs).ratio)
    assert est.p_value == sequential.look(logs).p_value
    assert compare.estimate(base, cand[:-1], "latency").method != "pairs"  # not pair for pair


def test_shared_cores_are_the_last_allowed_ones():
    allowed = sorted(os.sched_getaffinity(0))
    assert shared_cores(1) == allowed[-1:]
    assert shared_cores(len(allowed) + 3) == allowed


def _slow_copy(tmp_path: Path, extra_work: str) -> Path:
    """A copy of the built-in plugins whose calibration model does more work."""
    folder = tmp_path / "slow"
    shutil.copytree(PLUGINS, folder / "plugins", ignore=shutil.ignore_patterns("__pycache__"))
    source = folder / "plugins" / "calibration.py"
    text = source.read_text()
    source.write_text(text.replace("for _ in range(self.work):", extra_work))
    assert source.read_text() != text
    return folder


def _records(path: Path) -> list[CaseRecord]:
    return [r for r in iter_records(path) if isinstance(r, CaseRecord)]


def test_ab_writes_each_pair_of_both_sides_and_compare_judges_the_session_again(tmp_path, capsys):
    out = tmp_path / "ab"
    # time to settle even on a loaded machine: a session stops once its verdict is settled
    assert (
        main(
            [
                "ab",
                *FAST,
                "--time",
                "600",
                "--baseline",
                str(ROOT),
                "--threshold",
                "50%",
                "--out",
                str(out),
                "-q",
                "--json",
            ]
        )
        == 0
    )
    (printed,) = json.loads(capsys.readouterr().out)["cases"]
    (session,) = out.iterdir()
    base, cand = (_records(session / f"{side}.jsonl") for side in ("baseline", "candidate"))
    assert len(base) == len(cand) == printed["pairs"] >= sequential.MIN_PAIRS
    for pair, (b, c) in enumerate(zip(base, cand)):
        assert b.interleaved["session"] == c.interleaved["session"]
        assert (b.interleaved["pair"], c.interleaved["pair"]) == (pair, pair)
        assert (b.interleaved["side"], c.interleaved["side"]) == ("baseline", "candidate")
        assert len(b.interleaved["turns"]) == len(c.interleaved["turns"]) >= MIN_TURNS
        assert sum(c.interleaved["turns"]) == len(c.latency["samples"])
        assert sum(s * b.latency["block_size"] for s in b.latency["samples"]) >= 0.05
    assert cand[0].interleaved["source"] == f"working tree of {ROOT}"
    assert base[0].interleaved["source"] == f"folder {ROOT}"
    assert printed["verdict"] == "no change" and printed["method"] == "pairs", printed
    assert printed["time_s"] == max(c.interleaved["case_elapsed_s"] for c in cand)
    assert (
        main(
            [
                "compare",
                str(session / "baseline.jsonl"),
                str(session / "candidate.jsonl"),
                "--threshold",
                "50%",
                "--json",
            ]
        )
        == 0
    )
    (again,) = json.loads(capsys.readouterr().out)["cases"]
    assert {k: again[k] for k in ("ratio", "ci_low", "ci_high", "verdict")} == {
        k: printed[k] for k in ("ratio", "ci_low", "ci_high", "verdict")
    }


def test_ab_calls_a_doubled_workload_slower_and_fails_when_asked(tmp_path, capsys):
    slow = _slow_copy(tmp_path, "for _ in range(2 * self.work):")
    code = main(
        [
            "ab",
            *FAST,
            "--baseline",
            str(ROOT),
            "--candidate",
            str(slow),
            "--out",
            str(tmp_path / "ab"),
            "-q",
            "--json",
            "--fail-on-regression",
        ]
    )
    (case,) = json.loads(capsys.readouterr().out)["cases"]
    assert code == 1
    assert case["verdict"] == "slower"
    assert 1.5 < case["ratio"] < 2.5
    assert 1.0 < case["ci_low"] <= case["ratio"] <= case["ci_high"]  # three pairs: a wide CS
    assert case["pairs"] <= sequential.MIN_PAIRS + 2  # a large change settles in a few pairs


@pytest.mark.parametrize("revision", ["HEAD", "HEAD~1"])
def test_ab_takes_the_baseline_from_a_git_revision_and_records_its_commit(tmp_path, revision):
    found = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", revision], capture_output=True, text=True
    )
    if found.returncode:
        pytest.skip(f"no {revision} here: not a git checkout, or a shallow one")
    chosen = ["--baseline", revision] if revision != "HEAD" else []
    assert main(["ab", *FAST, *chosen, "--threshold", "50%", "--out", str(tmp_path), "-q"]) == 0
    (session,) = tmp_path.iterdir()
    sha = found.stdout.strip()
    (record, *_) = _records(session / "baseline.jsonl")
    assert record.interleaved["source"] == f"{revision} ({sha[:10]})"
    header = next(r for r in iter_records(session / "baseline.jsonl") if isinstance(r, RunHeader))
    assert header.environment["git"] == {"commit": sha, "dirty": False}
    assert header.side["code"]["revision"] == revision
    assert header.side["code"]["git"]["commit"] == sha


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["--baseline", "no-such-revision-xyz"], ["no revision 'no-such-revision-xyz'", "folder"]),
        (["--candidate", "/proc/self/fdinfo"], ["holds no Python package of model code"]),
        (["-b", "auto"], ["-b N[,N] instead of auto"]),
        (["--candidate-python", "/no/such/python"], ["no Python interpreter at '/no/such/python'"]),
        (["--candidate-env", "1BAD"], ["expected NAME=VALUE"]),
    ],
)
def test_ab_usage_errors_exit_2_with_one_line(capsys, argv, fragments):
    try:
        code = main(["ab", *FAST, "-q", *argv])
    except SystemExit as exc:  # refused while parsing the options
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("harness")
    for fragment in fragments:
        assert fragment in err


def test_outside_a_git_checkout_the_default_sides_are_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["ab", *FAST, "-q"]) == 2
    assert "is not in one" in capsys.readouterr().err


@pytest.mark.parametrize(
    "body, timeout, status, fragments",
    [
        (
            "import os, signal\n        os.kill(os.getpid(), signal.SIGABRT)\n"
            "        for _ in range(self.work):",
            "60",
            "crashed",
            ["candidate (folder", "killed by SIGABRT"],
        ),
        (
            "import time\n        time.sleep(3600)\n        for _ in range(self.work):",
            "3",
            "timeout",
            ["candidate (folder", "did not answer within 3 s", "--timeout"],
        ),
        (
            "raise RuntimeError('deliberate')\n        for _ in range(self.work):",
            "60",
            "error",
            ["candidate (folder", "failed: RuntimeError: deliberate"],
        ),
    ],
)
def test_a_side_that_crashes_hangs_or_raises_is_recorded_and_the_exit_status_is_1(
    tmp_path, capsys, body, timeout, status, fragments
):
    broken = _slow_copy(tmp_path, body)
    code = main(
        [
            "ab",
            *FAST,
            "--baseline",
            str(ROOT),
            "--candidate",
            str(broken),
            "--timeout",
            timeout,
            "--out",
            str(tmp_path / "ab"),
            "-q",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    (failed,) = [line for line in out.splitlines() if line.startswith("failed: ")]
    for fragment in fragments:
        assert fragment in failed
    (session,) = (tmp_path / "ab").iterdir()
    (base,), (cand,) = (_records(session / f"{s}.jsonl") for s in ("baseline", "candidate"))
    assert (base.status, cand.status) == ("skipped", status)
    assert fragments[-1] in cand.error


def test_ab_measures_models_of_plugins_named_in_the_environment(
    plugin_module, monkeypatch, tmp_path, capsys
):
    monkeypatch.setenv("HARNESS_PLUGINS", plugin_module(TOY_PLUGIN))
    assert (
        main(
            [
                "ab",
                "-m",
                "toy_linear",
                "-b",
                "2",
                "--pair-time",
                "0.05",
                "--candidate-threads",
                "1",
                "--threshold",
                "50%",
                "--out",
                str(tmp_path),
                "-q",
                "--json",
            ]
        )
        == 0
    )
    (case,) = json.loads(capsys.readouterr().out)["cases"]
    assert case["model"] == "toy_linear" and case["verdict"] == "no change"


def _fake_interpreter(tmp_path: Path, script: str) -> str:
    """An executable that stands where a side's python would and does ``script``."""
    path = tmp_path / "python"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return str(path)


def test_a_side_that_closes_its_answers_but_lives_on_is_killed_and_called_crashed(tmp_path):
    from harness.abtest.pair import Side, _Worker

    side = Side(python=_fake_interpreter(tmp_path, "exec 1>&-; exec sleep 600"))
    work = _Worker(side, timeout=1.0)
    try:
        with pytest.raises(InterleaveError) as raised:
            work.receive(30.0)
        assert raised.value.status == "crashed"
        assert "did not exit within 1 s; killed" in str(raised.value)
        assert work.proc.poll() is not None
    finally:
        work.close()


def test_closing_a_side_whose_process_died_with_a_request_unsent_does_not_raise(tmp_path):
    from harness.abtest.pair import Side, _Worker

    work = _Worker(Side(python=_fake_interpreter(tmp_path, "exec sleep 600")), timeout=1.0)
    work.proc.kill()
    work.proc.wait()
    work.proc.stdin.write("x" * 100)  # buffered: flushing it to the dead process would fail
    work.close()
    assert work.proc.stdin.closed and work.proc.returncode == -signal.SIGKILL


def test_a_ctrl_c_while_a_side_starts_is_raised_once_its_process_is_listed():
    from harness.abtest.pair import _interrupt_deferred

    reached = []
    with pytest.raises(KeyboardInterrupt):
        with _interrupt_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # a signal is handled within a few bytecodes: it was held
            reached.append("the end of the block")
    assert reached == ["the end of the block"]


def test_the_spawner_kills_every_process_it_started_even_those_taken(tmp_path):
    from harness.abtest.pair import Side, Spawner

    side = Side(python=_fake_interpreter(tmp_path, "exec sleep 600"))
    with Spawner(None, timeout=1.0) as spawner:
        taken = spawner.take(side)  # as a pair interrupted before it could close it
        spawner.prepare(side)
    assert taken.proc.poll() == -signal.SIGKILL
