"""harness: a plugin-based benchmark and regression harness for PyTorch models."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import pluggy

from harness.hookspecs import PROJECT
from harness.shapes import Constraint, Expr, Shape

if TYPE_CHECKING:
    from harness.spec import Dim, Input, ModelSpec

try:
    __version__ = version("harness")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin's hook implementations: ``@harness.hookimpl def harness_models(): ...``."""

__all__ = ["Constraint", "Dim", "Expr", "Input", "ModelSpec", "Shape", "hookimpl", "__version__"]
_NEED_TORCH = ("Dim", "Input", "ModelSpec")


def __getattr__(name: str) -> Any:
    """The spec classes on first use: importing them imports torch (2 s), which
    ``harness --help`` and ``--version`` do without."""
    if name in _NEED_TORCH:
        from harness import spec

        return getattr(spec, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
