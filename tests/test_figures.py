"""Figures that say what they are: percentiles per call or per block, and the settings a
run measured under, which `harness compare` warns about when the two sides differ."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
from rich.console import Console

from harness.cli import main
from harness.commands.run import results_table
from harness.measure import environment
from harness.store.record import CaseRecord, RunHeader
from harness.store.results import ResultsWriter
from harness.sweep.plan import Case
from tests.conftest import series_record, write_series
from tests.test_cli import run_cli


def _table_text(rows) -> str:
    console = Console(record=True, width=250)
    console.print(results_table(rows, "results"))
    return console.export_text()


def _ok(batch: int, per: str | None, block_size: int) -> tuple[Case, CaseRecord]:
    latency = {
        "median": 1e-3,
        "iqr": 1e-4,
        "ci_low": 9e-4,
        "ci_high": 1.1e-3,
        "n": 20,
        "block_size": block_size,
        **({"per": per} if per else {}),
    }
    return Case("mlp", batch), CaseRecord(
        "mlp", batch, {}, latency=latency, throughput=batch / 1e-3
    )


def test_the_results_table_names_its_spread_per_call_or_per_block():
    assert "IQR (per call)" in _table_text([_ok(1, "call", 1), _ok(2, "call", 1)])
    # a record from before "per" was written says it through its block size
    assert "IQR (per block of 16)" in _table_text([_ok(1, None, 16), _ok(2, "block", 16)])
    mixed = _table_text([_ok(1, "call", 1), _ok(2, "block", 16)])
    assert "100 us (per call)" in mixed and "100 us (per block of 16)" in mixed


def test_a_run_records_its_settings_and_names_its_percentiles(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KMP_BLOCKTIME", "1")
    monkeypatch.setenv("TORCHINDUCTOR_TEST_HOSTILE", "[/red]" + "x" * 1000)
    out_file = tmp_path / "run.jsonl"
    code, out, _ = run_cli(
        capsys,
        "run",
        "-m",
        "perceptron",
        "-b",
        "1",
        "--max-time",
        "0.05",
        "--warmup-time",
        "0.01",
        "--isolation",
        "none",
        "--out",
        str(out_file),
    )
    assert code == 0
    header, case = (json.loads(line) for line in out_file.read_text().splitlines()[:2])
    env = header["environment"]
    assert env["torch_settings"] == {
        "float32_matmul_precision": "highest",
        "cuda_matmul_allow_tf32": False,
        "cudnn_allow_tf32": True,
        "cudnn_benchmark": False,
        "cudnn_deterministic": False,
        "deterministic_algorithms": False,
    }
    variables = env["environment_variables"]
    assert variables["KMP_BLOCKTIME"] == "1"
    assert variables["TORCHINDUCTOR_TEST_HOSTILE"] == ("[/red]" + "x" * 1000)[:200]
    assert "PATH" not in variables and "HOME" not in variables
    assert env["memory_bytes"] > 2**20 and "triton_version" in env
    # a perceptron's call is far too short to time alone: its spread is of block means
    latency = case["latency"]
    assert latency["per"] == "block" and latency["block_size"] > 1
    assert f"IQR (per block of {latency['block_size']})" in out


def _write(path: Path, header: dict, threads: int) -> Path:
    rng = np.random.default_rng(0)
    with ResultsWriter(path, RunHeader(**header)) as writer:
        for batch in (1, 8):
            record = series_record(
                "mlp", batch, "float32", "none", rng.lognormal(np.log(1e-3), 0.02, 30)
            )
            writer.write_case(CaseRecord(**{**record, "threads": threads}))
    return path


def _header() -> dict:
    return {
        "command": ["harness", "run"],
        "environment": environment.collect(),
        "settings": {"isolation": "process", "min_time": 0.2, "max_time": 1.0},
    }


def _warnings(out: str) -> list[str]:
    return [line for line in out.splitlines() if "differ in settings" in line]


def test_compare_warns_in_one_line_when_threads_or_torch_differ(tmp_path, capsys):
    base = _write(tmp_path / "base.jsonl", _header(), threads=1)
    changed = _header()
    changed["environment"]["torch_version"] = "2.0.0"
    cand = _write(tmp_path / "cand.jsonl", changed, threads=2)
    code, out, _ = run_cli(capsys, "compare", str(base), str(cand))
    assert code == 0
    [warning] = _warnings(out)
    assert "threads 1 -> 2" in warning
    assert f"torch_version {_header()['environment']['torch_version']} -> 2.0.0" in warning
    code, out, _ = run_cli(capsys, "compare", str(base), str(cand), "--json")
    assert {d["name"] for d in json.loads(out)["different_settings"]} == {
        "threads",
        "torch_version",
    }


def test_compare_prints_no_settings_warning_when_they_match(tmp_path, capsys):
    base = _write(tmp_path / "base.jsonl", _header(), threads=1)
    cand = _write(tmp_path / "cand.jsonl", _header(), threads=1)
    code, out, _ = run_cli(capsys, "compare", str(base), str(cand))
    assert code == 0 and not _warnings(out)


def test_a_run_that_did_not_record_a_setting_is_not_called_different(tmp_path, capsys):
    old = _header()
    del old["settings"], old["environment"]["torch_settings"]
    del old["environment"]["environment_variables"]
    changed = _header()
    changed["settings"]["isolation"] = "none"
    changed["environment"]["torch_settings"]["cudnn_benchmark"] = True
    changed["environment"]["environment_variables"]["OMP_NUM_THREADS"] = "7"
    base = _write(tmp_path / "base.jsonl", old, threads=1)
    cand = _write(tmp_path / "cand.jsonl", changed, threads=1)
    _, out, _ = run_cli(capsys, "compare", str(base), str(cand))
    assert not _warnings(out)


def test_the_settings_warning_shows_values_from_files_as_short_plain_text(tmp_path, capsys):
    hostile = _header()
    hostile["environment"]["environment_variables"] = {
        "OMP_NUM_THREADS": "[/red]\x1b[31m" + "9" * 500
    }
    plain = copy.deepcopy(hostile)
    plain["environment"]["environment_variables"] = {}
    base = _write(tmp_path / "base.jsonl", plain, threads=1)
    cand = _write(tmp_path / "cand.jsonl", hostile, threads=1)
    code, out, err = run_cli(capsys, "compare", str(base), str(cand))
    assert code == 0 and "Traceback" not in err
    [warning] = _warnings(out)
    assert "OMP_NUM_THREADS unset -> [/red]?[31m999" in warning
    assert "\x1b" not in warning and len(warning) < 200


def test_the_report_history_chart_names_its_spread_per_call_or_per_block(tmp_path, capsys):
    write_series(tmp_path / "runs", runs=3)  # block_size 1: one call per sample
    out = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "runs"), "-o", str(out)]) == 0
    capsys.readouterr()
    history_tips = re.findall(r"\(\w+\): median [^,<]+, IQR([^0-9]*)\d", out.read_text())
    assert history_tips and set(history_tips) == {" (per call) "}
