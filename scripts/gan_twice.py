"""The gan suite's models with each forward run twice: exactly double the work under the
same names, dimensions and suites, so a run with this plugin (``--disable-plugin gan
--plugin gan_twice``, with ``scripts/`` on ``PYTHONPATH``) is a known 2x slowdown of
every case of ``harness run --suite gan``. ``scripts/validate_runs.py`` uses it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

import harness
from harness import ModelSpec
from harness.models.register import registered_in
from harness_plugins import gan


class Twice(nn.Module):
    """``model`` called twice on the same inputs; the second call's output is returned."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        self.model(*inputs)
        return self.model(*inputs)


def _twice(constructor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    return lambda **kwargs: Twice(constructor(**kwargs))


@harness.hookimpl
def harness_models() -> list[ModelSpec]:
    return [
        dataclasses.replace(spec, constructor=_twice(spec.constructor))
        for spec in registered_in(gan)
    ]
