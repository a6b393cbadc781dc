"""The pytest plugin (harness_pytest): registered models as pytest-benchmark cases.

Each test runs pytest in a subprocess, as a user would, with pytest-benchmark for real.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

TEST_FILE = """
    def test_model(benchmark, harness_case):
        benchmark(harness_case.step)
"""
FAST = (
    "-p",
    "no:cacheprovider",
    "--benchmark-only",
    "--benchmark-max-time=0.02",
    "--benchmark-min-rounds=5",
)


@pytest.fixture
def user_tests(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_models=TEST_FILE)
    return pytester


def test_without_harness_options_its_tests_are_skipped_and_nothing_loads(user_tests):
    result = user_tests.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no harness cases selected: give --harness-suite*"])


def test_selected_cases_become_benchmarks_that_pytest_benchmark_compare_reads(user_tests):
    result = user_tests.runpytest_subprocess(
        "--harness-suite",
        "smoke",
        "--harness-model",
        "perceptron,softmax_classifier",
        "--harness-batch-sizes",
        "1,4",
        "--benchmark-json=out.json",
        *FAST,
    )
    result.assert_outcomes(passed=4)
    benchmarks = json.loads((user_tests.path / "out.json").read_text())["benchmarks"]
    assert [b["name"] for b in benchmarks] == [
        "test_model[perceptron-B=1,NIN=100]",
        "test_model[perceptron-B=4,NIN=100]",
        "test_model[softmax_classifier-B=1,NIN=100,NOUT=20]",
        "test_model[softmax_classifier-B=4,NIN=100,NOUT=20]",
    ]
    info = benchmarks[1]["extra_info"]
    assert info == {
        "harness_case": "perceptron[B=4,NIN=100]",
        "model": "perceptron",
        "batch_size": 4,
        "dtype": "float32",
        "device": "cpu",
        "compile_mode": "none",
        "mode": "infer",
        "dims": {"NIN": 100},
    }
    assert benchmarks[1]["group"] == "perceptron" and benchmarks[1]["stats"]["median"] > 0
    compared = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_benchmark",
            "compare",
            str(user_tests.path / "out.json"),
            "--group-by=group",
        ],
        capture_output=True,
        text=True,
    )
    assert compared.returncode == 0, compared.stderr
    assert "test_model[softmax_classifier-B=4,NIN=100,NOUT=20]" in compared.stdout


def test_compare_fail_gates_an_injected_regression_against_a_saved_baseline(
    user_tests, monkeypatch, work_plugin_env
):
    for key in ("PYTHONPATH", "HARNESS_PLUGINS", "HARNESS_TEST_WORK"):
        monkeypatch.setenv(key, work_plugin_env[key])
    storage = f"--benchmark-storage=file://{user_tests.path / 'baselines'}"
    select = ("--harness-model", "toy_work", storage, *FAST)
    user_tests.runpytest_subprocess(*select, "--benchmark-save=base").assert_outcomes(passed=1)
    gate = ("--benchmark-compare=0001", "--benchmark-compare-fail=median:100%")
    user_tests.runpytest_subprocess(*select, *gate).assert_outcomes(passed=1)
    monkeypatch.setenv("HARNESS_TEST_WORK", "40")  # 40 matrix products instead of 1
    regressed = user_tests.runpytest_subprocess(*select, *gate)
    assert regressed.ret != 0
    regressed.stderr.fnmatch_lines(
        ["Performance has regressed:", "*toy_work*Field 'median' has failed*"]
    )


def test_a_bad_selection_is_a_one_line_usage_error(user_tests):
    result = user_tests.runpytest_subprocess("-p", "no:cacheprovider", "--harness-suite", "gna")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*harness: unknown suite 'gna'; did you mean 'gan'*"])


def test_harness_export_writes_runs_that_pytest_benchmark_compare_reads(tmp_path, capsys):
    from harness.cli import main
    from harness.store.record import CaseRecord, RunHeader
    from harness.store.results import ResultsWriter

    samples = [2e-4, 2.2e-4, 2.1e-4, 2.05e-4, 3e-4]
    case = {
        "model": "mlp",
        "suite": None,
        "batch_size": 8,
        "device": "cpu",
        "dtype": "float32",
        "precision": "cast",
        "compile_mode": "none",
        "backend": None,
        "mode": "infer",
        "dims": {"NIN": 100},
        "status": "ok",
        "error": None,
        "latency": {"unit": "s", "median": 2.1e-4, "samples": samples, "block_size": 16},
    }
    env = {"hostname": "box", "cpu_model": "cpu", "git": {"commit": "ab" * 20, "dirty": False}}
    header = RunHeader(command=("t",), environment=env)
    with ResultsWriter(tmp_path / "run.jsonl", header) as out:
        out.write_case(CaseRecord(**case))
        out.write_case(CaseRecord(**{**case, "model": "vae", "status": "error", "latency": None}))

    assert main(["export", str(tmp_path / "run.jsonl"), "--out", str(tmp_path / "b.json")]) == 0
    assert "1 cases" in capsys.readouterr().out
    (benchmark,) = json.loads((tmp_path / "b.json").read_text())["benchmarks"]
    assert benchmark["name"] == "mlp[B=8,NIN=100]" and benchmark["extra_info"]["batch_size"] == 8
    assert benchmark["stats"]["median"] == 2.1e-4 and benchmark["stats"]["rounds"] == 5
    assert benchmark["stats"]["iterations"] == 16
    compared = subprocess.run(
        [sys.executable, "-m", "pytest_benchmark", "compare", str(tmp_path / "b.json")],
        capture_output=True,
        text=True,
    )
    assert compared.returncode == 0, compared.stderr
    assert "mlp[B=8,NIN=100]" in compared.stdout
