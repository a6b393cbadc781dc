"""Damaged results files: each bad line is skipped with file, line and why, on one line;
a file with nothing valid is a one-line error; no command ends in a traceback."""

from __future__ import annotations

import codecs
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import ResultsError
from harness.store.results import SHOWN_SKIPS, CorruptLineWarning, load
from tests.conftest import SERIES_CASES, write_series

CASES = len(SERIES_CASES)
DAMAGED_AT = 3  # the line the damage is put at: after the header and a good case


def _case_with(case: dict, raw: bytes = b"", **changes) -> bytes:
    """``case`` changed; a field set to "RAW" becomes the bytes ``raw``, which JSON
    itself would not write (a 5000-digit integer, 1e999)."""
    return json.dumps({**case, **changes}).encode().replace(b'"RAW"', raw)


def _latency(case: dict, **changes) -> dict:
    return {**case["latency"], **changes}


# what is put on a line of an otherwise good file, and why it is skipped
DAMAGE: dict[str, tuple[Callable[[dict], bytes], str]] = {
    "nul_bytes": (lambda c: b"\0" * 64, "not JSON"),
    "not_utf8": (lambda c: bytes(range(128, 256)), "not UTF-8 text"),
    "deep_nesting": (lambda c: b"[" * 100_000 + b"]" * 100_000, "JSON nested too deeply"),
    "5000_digit_integer": (
        lambda c: _case_with(c, b"9" * 5000, batch_size="RAW"),
        "a number too long to read",
    ),
    "nan_literal": (lambda c: _case_with(c, b"NaN", throughput="RAW"), "NaN in it"),
    "latency_text": (lambda c: _case_with(c, latency="x"), "latency is 'x'"),
    "batch_size_text": (lambda c: _case_with(c, batch_size="abc"), "batch_size is 'abc'"),
    "dims_number": (lambda c: _case_with(c, dims=5), "dims is 5"),
    "no_model": (
        lambda c: json.dumps({k: v for k, v in c.items() if k != "model"}).encode(),
        "no model",
    ),
    "median_1e999": (
        lambda c: _case_with(c, b"1e999", latency=_latency(c, median="RAW")),
        "latency.median is inf",
    ),
    "negative_samples": (
        lambda c: _case_with(c, latency=_latency(c, samples=[1e-3, -1e-3])),
        "latency.samples holds -0.001",
    ),
    "text_samples": (
        lambda c: _case_with(c, latency=_latency(c, samples=[1e-3, "fast"])),
        "latency.samples holds 'fast'",
    ),
    "negative_memory": (
        lambda c: _case_with(c, memory={"cpu_peak_rss_bytes": -5}),
        "memory.cpu_peak_rss_bytes is -5",
    ),
    "not_an_object": (lambda c: b"[1, 2, 3]", "a JSON list, not an object"),
    "memory_text": (
        lambda c: _case_with(c, memory={"cpu_peak_rss_bytes": "x"}),
        "memory.cpu_peak_rss_bytes is 'x', expected a number or null",
    ),
    "utilisation_text": (
        lambda c: _case_with(c, flops={"utilisation": "x"}),
        "flops.utilisation is 'x'",
    ),
    "samples_null": (
        lambda c: _case_with(c, latency=_latency(c, samples=None)),
        "latency.samples is None",
    ),
}


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    """Three good runs of the series cases, one file each."""
    (tmp_path / "runs").mkdir()
    return write_series(tmp_path / "runs", runs=3)


def _damaged(runs: list[Path], kinds: list[str], name: str = "damaged") -> Path:
    """The first run with one line of each damage kind put in at ``DAMAGED_AT`` on."""
    lines = runs[0].read_bytes().splitlines()
    case = json.loads(lines[1])
    bad = [DAMAGE[kind][0](case) for kind in kinds]
    path = runs[0].parent.parent / f"{name}.jsonl"
    path.write_bytes(b"\n".join([*lines[: DAMAGED_AT - 1], *bad, *lines[DAMAGED_AT - 1 :]]) + b"\n")
    return path


def _commands(path: Path, others: list[Path], out: Path) -> dict[str, list[str]]:
    """Each command that reads results, given ``path`` where it reads a run."""
    rest = [str(p) for p in others]
    return {
        "results": ["results", str(path), "--json"],
        "compare": ["compare", rest[0], str(path), "--json"],
        "history": ["history", str(path), *rest, "--json"],
        "report": ["report", str(path), *rest, "-o", str(out)],
    }


def _check_kept(command: str, stdout: str, out: Path) -> None:
    """That the command used every good case of the damaged file."""
    if command == "report":
        assert out.stat().st_size > 0
        return
    document = json.loads(stdout)
    if command == "results":
        assert [run["cases"] for run in document] == [CASES]
    elif command == "compare":
        assert len(document["cases"]) == CASES
    else:
        assert len(document["runs"]) == 3 and len(document["cases"]) == CASES


@pytest.mark.parametrize("kind", DAMAGE)
def test_load_skips_a_damaged_line_naming_file_line_and_why_and_keeps_the_rest(runs, kind):
    path = _damaged(runs, [kind])
    why = DAMAGE[kind][1]
    with pytest.warns(CorruptLineWarning, match=rf"{path}:{DAMAGED_AT}: skipped: {why}"):
        frame = load(path)
    assert len(frame) == CASES
    assert sorted(zip(frame["model"], frame["batch_size"])) == sorted(
        (m, b) for m, b, *_ in SERIES_CASES
    )


@pytest.mark.parametrize("kind", DAMAGE)
def test_every_command_skips_a_damaged_line_and_uses_the_rest(runs, kind, capsys):
    path = _damaged(runs, [kind])
    out = path.with_suffix(".html")
    for command, argv in _commands(path, runs[1:], out).items():
        with pytest.warns(
            CorruptLineWarning, match=rf"{path}:{DAMAGED_AT}: skipped: {DAMAGE[kind][1]}"
        ):
            assert main(argv) == 0, command
        stdout, stderr = capsys.readouterr()
        assert "Traceback" not in stdout + stderr
        _check_kept(command, stdout, out)


@pytest.mark.parametrize(
    "command",
    [
        "results",
        *(pytest.param(c, marks=pytest.mark.slow) for c in ("compare", "history", "report")),
    ],
)
def test_the_cli_names_each_damaged_line_on_one_line_of_its_own(runs, command):
    """The real command line, in a process of its own: warnings as Python does not show
    them, one line each (in-process, pytest records them instead)."""
    kinds = list(DAMAGE)
    path = _damaged(runs, kinds[:SHOWN_SKIPS])
    out = path.with_suffix(".html")
    argv = _commands(path, runs[1:], out)[command]
    done = subprocess.run(
        [sys.executable, "-m", "harness", *argv], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    warned = done.stderr.splitlines()
    assert len(warned) == SHOWN_SKIPS
    for line, (lineno, kind) in zip(warned, enumerate(kinds, start=DAMAGED_AT)):
        assert line.startswith(f"harness: warning: {path}:{lineno}: skipped: "), line
        assert DAMAGE[kind][1] in line
    _check_kept(command, done.stdout, out)


def test_past_the_first_damaged_lines_the_rest_are_counted(runs):
    kinds = [*DAMAGE, *DAMAGE]
    path = _damaged(runs, kinds)
    with pytest.warns(CorruptLineWarning) as warned:
        assert len(load(path)) == CASES
    messages = [str(w.message) for w in warned]
    assert len(messages) == SHOWN_SKIPS + 1
    assert messages[-1] == f"{path}: skipped {len(kinds) - SHOWN_SKIPS} more damaged lines"


def _binary(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 64)


def _nul_bytes(path: Path) -> None:
    path.write_bytes(b"\0" * 4096 + b"\n" + b"\0" * 10)


def _bad_header(path: Path, runs: list[Path]) -> None:
    """A run whose header lacks its id: its cases alone are no run."""
    lines = runs[0].read_text().splitlines()
    header = {k: v for k, v in json.loads(lines[0]).items() if k != "run_id"}
    path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")


NOTHING_VALID = {
    "binary": lambda p, runs: _binary(p),
    "nul_bytes": lambda p, runs: _nul_bytes(p),
    "header_without_run_id": _bad_header,
}


@pytest.mark.parametrize("kind", NOTHING_VALID)
def test_a_file_with_no_valid_run_is_a_one_line_error_naming_it(runs, kind, capsys, recwarn):
    path = runs[0].parent.parent / f"{kind}.jsonl"
    NOTHING_VALID[kind](path, runs)
    with pytest.raises(ResultsError, match=rf"^{path}: no valid run"):
        load(path)
    for command, argv in _commands(path, runs[1:], path.with_suffix(".html")).items():
        assert main(argv) == 1, command
        stdout, stderr = capsys.readouterr()
        assert stderr.startswith(
            f"harness: error: {path}: no valid run: not a harness results file, or damaged"
        ), command
        assert len(stderr.splitlines()) == 1 and "Traceback" not in stdout + stderr
    assert not [w for w in recwarn if w.category is CorruptLineWarning]


def test_a_file_with_no_valid_run_is_one_line_on_the_real_cli(runs):
    path = runs[0].parent.parent / "binary.jsonl"
    _binary(path)
    done = subprocess.run(
        [sys.executable, "-m", "harness", "compare", str(runs[1]), str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"harness: error: {path}: no valid run")
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_byte_order_mark_is_read_past(runs, capsys, recwarn):
    path = runs[0].parent.parent / "bom.jsonl"
    path.write_bytes(codecs.BOM_UTF8 + runs[0].read_bytes())
    assert len(load(path)) == CASES
    for command, argv in _commands(path, runs[1:], path.with_suffix(".html")).items():
        assert main(argv) == 0, command
        _check_kept(command, capsys.readouterr().out, path.with_suffix(".html"))
    assert not [w for w in recwarn if w.category is CorruptLineWarning]


def _odd(case: dict) -> list[dict]:
    """Records that are valid though readers once tripped on them: an ok case without
    samples (an import) beside heartbeats, a null block size, a compiled case that does
    not name its backend."""
    return [
        {**case, "latency": _latency(case, samples=[])},
        {**case, "latency": _latency(case, block_size=None)},
        {**case, "compile_mode": "default", "backend": None},
    ]


@pytest.mark.parametrize("which", range(3))
def test_odd_but_valid_records_are_read_by_every_command(runs, which, capsys, recwarn):
    lines = runs[0].read_text().splitlines()
    record = _odd(json.loads(lines[1]))[which]
    path = runs[0].parent.parent / "odd.jsonl"
    path.write_text("\n".join([lines[0], json.dumps(record), *lines[2:]]) + "\n")
    commands = _commands(path, runs[1:], path.with_suffix(".html"))
    commands["export"] = ["export", str(path), "-o", str(path.with_suffix(".json"))]
    for command, argv in commands.items():
        assert main(argv) == 0, command
        assert "Traceback" not in "".join(capsys.readouterr())
    assert not [w for w in recwarn if w.category is CorruptLineWarning]
