"""Shared fixtures: the real registry, throwaway plugin modules written to disk, asv."""

from __future__ import annotations

import itertools
import json
import os
import textwrap
from pathlib import Path

import pytest

from harness.registry import Registry, load_registry

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


WORK_PLUGIN = """
    import os
    import torch
    from torch import nn
    import harness
    from harness import Input, ModelSpec
    from harness.suites import Suite

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
        return [Suite(name="toy", models=("toy_work",),
                      sweep={"batch_sizes": (2,), "max_time": 0.05, "warmup_time": 0.01})]
"""


@pytest.fixture(scope="module")
def work_plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a subprocess that loads WORK_PLUGIN (model toy_work, suite toy)."""
    directory = tmp_path_factory.mktemp("work_plugin")
    (directory / "harness_test_work.py").write_text(textwrap.dedent(WORK_PLUGIN))
    return {**os.environ, "PYTHONPATH": str(directory), "HARNESS_PLUGINS": "harness_test_work",
            "HARNESS_TEST_WORK": "1"}


ROOT = Path(__file__).resolve().parents[1]
ASV_OUTPUTS = ("results_dir", "html_dir", "env_dir")


def asv_config(directory: Path) -> Path:
    """The project's asv.conf.json with everything asv writes moved into ``directory``."""
    from asv.util import load_json

    conf = load_json(ROOT / "asv.conf.json", js_comments=True)
    conf.update(repo=str(ROOT), benchmark_dir=str(ROOT / conf["benchmark_dir"]),
                **{key: str(directory / conf[key]) for key in ASV_OUTPUTS})
    path = directory / "asv.conf.json"
    path.write_text(json.dumps(conf))
    return path
