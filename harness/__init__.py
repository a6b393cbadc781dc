"""harness: a plugin-based benchmark and regression harness for PyTorch models."""

from importlib.metadata import PackageNotFoundError, version

import pluggy

from harness.hookspecs import PROJECT
from harness.shapes import Constraint, Expr, Shape
from harness.spec import Dim, Input, ModelSpec

try:
    __version__ = version("harness")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin's hook implementations: ``@harness.hookimpl def harness_models(): ...``."""

__all__ = ["Constraint", "Dim", "Expr", "Input", "ModelSpec", "Shape", "hookimpl",
           "__version__"]
