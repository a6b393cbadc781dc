"""asv: the benchmarks generated from the registry, discovered and run by asv itself.

These use asv's fast path (``--python=same``: this environment, no virtualenv builds);
the run over commits in asv's own virtualenvs is in docs/tracking.md, not in the tests.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from asv.util import load_json

from harness.bridges.tracking import SUITES_ENV
from harness.models.suites import ModelOverride, Suite
from tests.conftest import ASV_OUTPUTS, ROOT, asv_config


def test_the_configuration_pins_torch_and_writes_under_results():
    conf = load_json(ROOT / "asv.conf.json", js_comments=True)
    assert conf["environment_type"] == "virtualenv"
    assert conf["matrix"] == {"req": {"torch": ["2.13.0"]}}
    assert "--no-deps" in conf["build_command"][0]
    assert "--force-reinstall" not in conf["install_command"][0]
    assert all(conf[key].startswith("results/asv/") for key in ASV_OUTPUTS)


@pytest.fixture
def asv(tmp_path: Path):
    """Runs asv with the project's configuration, its outputs and machine file in tmp_path."""
    config = asv_config(tmp_path)
    env = {**{k: v for k, v in os.environ.items() if k != SUITES_ENV}, "HOME": str(tmp_path)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "asv", *args, "--config", str(config)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    run.results = tmp_path / "results/asv/results"
    return run


def test_asv_check_finds_the_generated_benchmarks_sound(asv):
    done = asv("check", "--python=same")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No problems found" in done.stdout


def test_a_quick_asv_run_here_measures_one_model_and_lists_every_tracked_one(asv, registry):
    assert asv("machine", "--yes").returncode == 0
    done = asv("run", "--python=same", "--quick", "--show-stderr", "-b", r"\.perceptron\.")
    assert done.returncode == 0, done.stdout + done.stderr
    for name in (
        "latency.perceptron.time_step",
        "metrics.perceptron.track_throughput",
        "metrics.perceptron.track_peak_memory",
    ):
        assert f"{name}" in done.stdout and "failed" not in done.stdout, done.stdout
    benchmarks = json.loads((asv.results / "benchmarks.json").read_text())
    for model in registry.suite_models(registry.suite("smoke")):
        time_step = benchmarks[f"latency.{model}.time_step"]
        assert time_step["param_names"] == ["batch_size", "dtype", "compile_mode"]
        assert time_step["params"] == [["2"], ["'float32'"], ["'none'"]]
        assert benchmarks[f"metrics.{model}.track_throughput"]["unit"] == "samples/s"
        assert benchmarks[f"metrics.{model}.track_peak_memory"]["unit"] == "bytes"
        assert f"metrics.{model}.track_compile_time" not in benchmarks  # nothing compiled


@pytest.fixture
def generated(monkeypatch, registry):
    """Imports benchmarks/ afresh with a suite that sweeps dtypes, a dimension and compile."""
    sweep = {
        "batch_sizes": (1, 4),
        "dtypes": ("float32", "bfloat16"),
        "compile": ("none", "default"),
    }
    registry.suites["sweep"] = Suite(
        "sweep",
        ("mlp", "unet2"),
        sweep=sweep,
        overrides={"unet2": ModelOverride(dims={"H": (32, 64)})},
    )
    monkeypatch.setattr("harness.models.registry.load_registry", lambda: registry)
    monkeypatch.setenv(SUITES_ENV, "sweep")
    monkeypatch.syspath_prepend(str(ROOT))
    _forget_benchmarks()
    yield (
        importlib.import_module("benchmarks.latency"),
        importlib.import_module("benchmarks.metrics"),
    )
    _forget_benchmarks()
    del registry.suites["sweep"]


def _forget_benchmarks() -> None:
    for name in [m for m in sys.modules if m == "benchmarks" or m.startswith("benchmarks.")]:
        del sys.modules[name]


def test_generated_parameters_follow_the_axes_the_cases_vary_in(generated):
    latency, metrics = generated
    assert latency.mlp.param_names == ["batch_size", "dtype", "compile_mode"]
    assert latency.mlp.params == [[1, 4], ["float32", "bfloat16"], ["none", "default"]]
    assert latency.unet2.param_names == ["dims", "batch_size", "dtype", "compile_mode"]
    assert latency.unet2.params[0] == ["H=32", "H=64"]
    assert len(latency.unet2.cases) == 2 * 2 * 2 * 2
    assert hasattr(metrics.mlp, "track_compile_time")
    assert metrics.mlp().tracked((4, "bfloat16", "default")).case.dims["NHID"] == 1024
    with pytest.raises(NotImplementedError, match="not tracked"):
        metrics.mlp().tracked((3, "float32", "none"))


def test_importing_asv_results_needs_a_results_directory_with_results(tmp_path, capsys):
    from harness.cli import main

    assert main(["import-asv", str(tmp_path / "none"), "--out", str(tmp_path / "a.jsonl")]) == 1
    assert "is not a directory of asv results" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert (
        main(
            [
                "import-asv",
                str(tmp_path / "empty"),
                "--commit",
                "abc",
                "--out",
                str(tmp_path / "a.jsonl"),
            ]
        )
        == 1
    )
    assert f"no asv results in {tmp_path / 'empty'} for commit abc" in capsys.readouterr().err


@pytest.mark.slow
def test_asv_continuous_over_the_culprit_and_its_parent_agrees_with_harness_bisect(tmp_path):
    """The same question asked both ways, in a clone whose last commit gives ``mlp`` two
    more hidden layers: asv builds each commit into its own virtualenv and flags the
    benchmark; harness bisect names the commit."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    dense = repo / "plugins" / "dense.py"
    text = dense.read_text()
    layers = "(num_inputs, hidden_size, hidden_size, num_outputs)"
    assert layers in text
    dense.write_text(
        text.replace(
            layers, "(num_inputs, hidden_size, hidden_size, hidden_size, hidden_size, num_outputs)"
        )
    )
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "commit", "-qam", "mlp: two more hidden layers"], check=True)
    culprit = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()

    env = {**{k: v for k, v in os.environ.items() if k != SUITES_ENV}, "HOME": str(tmp_path)}
    bisect = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "bisect",
            "HEAD~1",
            "HEAD",
            "-m",
            "mlp",
            "-b",
            "2",
            "--json",
            "-q",
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    found = json.loads(bisect.stdout)
    assert bisect.returncode == 0, bisect.stderr
    assert found["culprit"] == culprit and found["ratio"] > 1.2

    config = asv_config(tmp_path)
    conf = json.loads(config.read_text())
    conf.update(repo=str(repo), branches=["HEAD"], benchmark_dir=str(repo / "benchmarks"))
    config.write_text(json.dumps(conf))
    asv = [sys.executable, "-m", "asv"]
    subprocess.run(
        [*asv, "machine", "--yes", "--config", str(config)],
        cwd=repo,
        env=env,
        check=True,
        capture_output=True,
    )
    continuous = subprocess.run(
        [
            *asv,
            "continuous",
            "--config",
            str(config),
            "--factor",
            "1.1",
            "-b",
            r"^latency\.mlp\.time_step",
            "HEAD~1",
            "HEAD",
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    log = continuous.stdout + continuous.stderr
    assert "PERFORMANCE DECREASED" in log, log[-3000:]
    assert re.search(r"\+.*latency\.mlp\.time_step", log), log[-3000:]
