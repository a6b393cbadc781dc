"""Shared fixtures: the real registry, throwaway plugin modules written to disk, asv."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from harness.models.registry import Registry, load_registry

_counter = itertools.count()


@pytest.fixture(scope="session")
def registry() -> Registry:
    return load_registry()


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a plugin module and return its importable name (unique per call)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("HARNESS_PLUGINS", raising=False)
    monkeypatch.delenv("HARNESS_DISABLE_PLUGINS", raising=False)

    def write(source: str) -> str:
        name = f"harness_test_plugin_{next(_counter)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return write


TOY_PLUGIN = """
    import torch
    from torch import nn
    import harness
    from harness import Dim, Input, ModelSpec

    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            raise RuntimeError("deliberate failure in forward")

    @harness.hookimpl
    def harness_models():
        return [
            ModelSpec(name="toy_linear", constructor=nn.Linear, inputs=[Input("x", "(B, N)")],
                      outputs=["(B, M)"], dims={"N": Dim(8, kwarg="in_features"),
                                                "M": Dim(3, kwarg="out_features")},
                      batch_sizes=(1, 2)),
            ModelSpec(name="toy_boom", constructor=Boom, inputs=[Input("x", "(B, 4)")],
                      outputs=["(B, 4)"], batch_sizes=(1,)),
        ]
"""


SERIES_CASES = [
    ("mlp", 1, "float32", "none"),
    ("mlp", 8, "float32", "none"),
    ("mlp", 64, "float32", "none"),
    ("mlp", 8, "bfloat16", "none"),
    ("mlp", 8, "float32", "default"),
    ("conv", 1, "float32", "none"),
    ("conv", 4, "float32", "none"),
]


def series_record(
    model: str,
    batch: int,
    dtype: str,
    compile_mode: str,
    samples,
    heartbeat: tuple[float, float] = (1e-5, 1e-5),
) -> dict:
    """A case record as ``harness run`` writes it, with the fields reports read and the
    ``heartbeat`` (before, after) that compare reads."""
    import numpy as np

    median = float(np.median(samples))
    return {
        "model": model,
        "suite": "synthetic",
        "batch_size": batch,
        "device": "cpu",
        "dtype": dtype,
        "precision": "cast",
        "compile_mode": compile_mode,
        "backend": None if compile_mode == "none" else "inductor",
        "mode": "infer",
        "dims": {"N": 8},
        "status": "ok",
        "error": None,
        "latency": {
            "unit": "s",
            "median": median,
            "samples": [float(s) for s in samples],
            "block_size": 1,
        },
        "throughput": batch / median,
        "memory": {"cpu_peak_rss_bytes": 300 * 2**20 + batch * 2**20},
        "flops": {"utilisation": 0.4},
        "heartbeat": {"unit": "s", "before": heartbeat[0], "after": heartbeat[1]},
    }


def write_series(
    directory: Path,
    runs: int = 12,
    steps=None,
    outliers=(),
    seed: int = 0,
    commits=None,
    noise: float = 0.01,
) -> list[Path]:
    """One results file per run, a day apart, of the ``SERIES_CASES``.

    ``steps`` maps (model, batch, dtype, compile_mode) to (first run at the new level,
    ratio); ``outliers`` lists (case, run) pairs measured 40 % slower, once;
    ``commits`` gives each run's git commit. Each case lands ``noise`` (sd) off its
    level, and its heartbeats wander as much.
    """
    import math

    import numpy as np

    from harness.store.record import CaseRecord, RunHeader
    from harness.store.results import ResultsWriter

    rng = np.random.default_rng(seed)
    steps = steps or {}
    paths = []
    for i in range(runs):
        env = {
            "hostname": "box",
            "cpu_model": "test cpu",
            "cpu_count": 2,
            "threads": 1,
            "gpus": [],
            "torch_version": "2.13.0",
            "python_version": "3.11",
            "time": f"2026-11-{i + 1:02d}T03:00:00+00:00",
            "git": {"commit": commits[i] if commits else f"{i:02d}" + "ab" * 19, "dirty": False},
        }
        path = directory / f"run-{i:02d}.jsonl"
        header = RunHeader(command=("harness", "run"), environment=env)
        with ResultsWriter(path, header) as writer:
            for case in SERIES_CASES:
                model, batch, dtype, compile_mode = case
                level = (
                    1e-4
                    * batch**0.8
                    * (0.6 if dtype == "bfloat16" else 1)
                    * (0.8 if compile_mode != "none" else 1)
                )
                at, ratio = steps.get(case, (runs, 1.0))
                level *= (ratio if i >= at else 1) * math.exp(rng.normal(0, noise))
                level *= 1.4 if (case, i) in outliers else 1
                samples = level * rng.lognormal(0, 0.03, 30)
                beats = 1e-5 * rng.lognormal(0, noise, 2)
                beat = (float(beats[0]), float(beats[1]))
                writer.write_case(
                    CaseRecord(**series_record(model, batch, dtype, compile_mode, samples, beat))
                )
        paths.append(path)
    return paths


WORK_PLUGIN = """
    import os
    import torch
    from torch import nn
    import harness
    from harness import Input, ModelSpec
    from harness import Suite

    class Work(nn.Module):
        '''HARNESS_TEST_WORK products with one matrix: a regression is an env var away.'''

        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.eye(64))
            self.work = int(os.environ.get("HARNESS_TEST_WORK", "1"))

        def forward(self, x):
            for _ in range(self.work):
                x = x @ self.weight
            return x

    @harness.hookimpl
    def harness_models():
        return [ModelSpec(name="toy_work", constructor=Work, inputs=[Input("x", "(B, 64)")],
                          outputs=["(B, 64)"], batch_sizes=(2,))]

    @harness.hookimpl
    def harness_suites():
        # three cases: enough heartbeats for compare to know the run's machine noise
        return [Suite(name="toy", models=("toy_work",),
                      sweep={"batch_sizes": (1, 2, 4), "max_time": 0.05, "warmup_time": 0.01})]
"""


@pytest.fixture(scope="module")
def work_plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a subprocess that loads WORK_PLUGIN (model toy_work, suite toy)."""
    directory = tmp_path_factory.mktemp("work_plugin")
    (directory / "harness_test_work.py").write_text(textwrap.dedent(WORK_PLUGIN))
    return {
        **os.environ,
        "PYTHONPATH": str(directory),
        "HARNESS_PLUGINS": "harness_test_work",
        "HARNESS_TEST_WORK": "1",
    }


ROOT = Path(__file__).resolve().parents[1]


def plugin_pyproject(
    dist: str, entry_points: dict[str, str], version: str = "0.1.0", extra: str = ""
) -> str:
    """A third-party plugin package's pyproject.toml: setuptools, ``harness.plugins``."""
    points = "\n".join(f'"{name}" = "{module}"' for name, module in entry_points.items())
    return (
        f'[build-system]\nrequires = ["setuptools>=64"]\n'
        f'build-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{dist}"\nversion = "{version}"\n\n'
        f'[project.entry-points."harness.plugins"]\n{points}\n{extra}'
    )


ASV_OUTPUTS = ("results_dir", "html_dir", "env_dir")


def asv_config(directory: Path) -> Path:
    """The project's asv.conf.json with everything asv writes moved into ``directory``."""
    from asv.util import load_json

    conf = load_json(ROOT / "asv.conf.json", js_comments=True)
    conf.update(
        repo=str(ROOT),
        benchmark_dir=str(ROOT / conf["benchmark_dir"]),
        **{key: str(directory / conf[key]) for key in ASV_OUTPUTS},
    )
    path = directory / "asv.conf.json"
    path.write_text(json.dumps(conf))
    return path


def wait_for_cases(child: subprocess.Popen, out: Path, count: int) -> None:
    """Wait until the run ``child`` has recorded ``count`` cases in ``out``, and is still
    running (so a test can interrupt it mid-run)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if out.exists() and out.read_text().count('"record": "case"') >= count:
            break
        time.sleep(0.05)
    assert child.poll() is None, "the run ended before it could be interrupted"


CHAIN_PLUGIN = """
    import torch
    from torch import nn
    import harness
    from harness import Dim, Input, ModelSpec
    from harness import Suite

    REPEAT = {repeat}
    {broken}


    class Chain(nn.Module):
        def __init__(self, n=32, work=4, repeat=1):
            super().__init__()
            self.w = nn.Parameter(torch.eye(n))
            self.steps = work * repeat

        def forward(self, x):
            for _ in range(self.steps):
                x = x @ self.w
            return x


    @harness.hookimpl
    def harness_models():
        dims = {{"N": Dim(32, kwarg="n"), "WORK": Dim(4, kwarg="work")}}
        inputs, outputs = [Input("x", "(B, N)")], ["(B, N)"]
        return [ModelSpec(name="{prefix}_chain", constructor=Chain, inputs=inputs,
                          outputs=outputs, dims=dims, batch_sizes=(4,),
                          kwargs={{"repeat": REPEAT}}),
                ModelSpec(name="{prefix}_flat", constructor=Chain, inputs=inputs,
                          outputs=outputs, dims=dims, batch_sizes=(4,))]


    @harness.hookimpl
    def harness_suites():
        return [Suite(name="{prefix}", models=("{prefix}_chain", "{prefix}_flat"),
                      sweep={{"batch_sizes": (2,), "max_time": 0.02, "warmup_time": 0.01}})]
"""


def chain_plugin(prefix: str, repeat: int, broken: str = "") -> str:
    """A plugin module of two matrix-product chains (``PREFIX_chain``, whose work is
    ``repeat`` times ``PREFIX_flat``'s) and a suite ``PREFIX`` of both; ``broken`` is a
    line that runs on import."""
    return textwrap.dedent(CHAIN_PLUGIN.format(prefix=prefix, repeat=repeat, broken=broken))


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def chain_package(
    repo: Path, prefix: str, history: Sequence[tuple[str, int, str]], entry_point: str | None = None
) -> list[str]:
    """A git checkout of a plugin package (not installed) holding :func:`chain_plugin`,
    one commit per (message, repeat, broken line) of ``history``, each also changing the
    module's last line; its commits' hashes. ``entry_point`` names the plugin (default
    ``PREFIX``)."""
    (repo / "src" / prefix).mkdir(parents=True)
    (repo / "src" / prefix / "__init__.py").write_text("")
    module = f"{prefix}.plugin"
    (repo / "pyproject.toml").write_text(plugin_pyproject(prefix, {entry_point or prefix: module}))
    git(repo, "init", "-q")
    shas = []
    for index, (message, repeat, broken) in enumerate(history):
        (repo / "src" / prefix / "plugin.py").write_text(
            chain_plugin(prefix, repeat, broken) + f"# commit {index}\n"
        )
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", message)
        shas.append(git(repo, "rev-parse", "HEAD"))
    return shas
