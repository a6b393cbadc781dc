"""Shared fixtures: the real registry, and throwaway plugin modules written to disk."""

from __future__ import annotations

import itertools
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
