"""harness: a plugin-based benchmark and regression harness for PyTorch models."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import pluggy

from harness.errors import HarnessError, UsageError
from harness.models.hookspecs import PROJECT
from harness.models.shapes import Constraint, Expr, Shape
from harness.models.suites import Suite

if TYPE_CHECKING:
    from harness.api import bench, compare, load, run
    from harness.models.register import register
    from harness.models.spec import Dim, Input, ModelSpec

try:
    __version__ = version("harness")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin's hook implementations: ``@harness.hookimpl def harness_models(): ...``."""

__all__ = [
    "Constraint",
    "Dim",
    "Expr",
    "HarnessError",
    "Input",
    "ModelSpec",
    "Shape",
    "Suite",
    "UsageError",
    "ab",
    "bench",
    "compare",
    "hookimpl",
    "load",
    "register",
    "run",
    "__version__",
]
_NEED_TORCH = ("Dim", "Input", "ModelSpec")
_API = ("ab", "bench", "compare", "load", "run")


def __getattr__(name: str) -> Any:
    """The spec classes, ``register`` and the Python API on first use: importing them
    imports torch (2 s), which ``harness --help`` and ``--version`` do without."""
    if name in _NEED_TORCH:
        from harness.models import spec

        return getattr(spec, name)
    if name == "register":
        from harness.models.register import register

        return register
    if name in _API:
        from harness import api

        return getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
