"""Suites: named selections of models with their sizes and sweep defaults (TOML).

A suite file is data a user edits by hand, so every key is checked and an
unknown one is an error naming the file, rather than a silently ignored typo.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from harness.axes import AUTO, AXES, Axis
from harness.errors import SuiteError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

ALL_MODELS = "*"
_AXES = {axis.suite_key: axis for axis in AXES if axis.suite_key}
SETTINGS = {  # what a [sweep] table sets besides the axes: how each case is measured
    "max_time": "seconds per case (number > 0)",
    "warmup_time": "seconds of warm-up per case (number >= 0)",
    "min_time": "seconds of sampling per case before it may stop early (number >= 0)",
    "target_precision": "relative CI half-width at which sampling stops (0 < x < 1)",
    "timeout": "seconds before a case is ended as timed out (number > 0)",
    "repeats": "fresh processes per case, spread over the run (integer >= 1)",
}
SWEEP_KEYS = {*_AXES, *SETTINGS}
MODEL_KEYS = {"dims", "batch_sizes"}
TOP_KEYS = {"name", "description", "requires", "models", "sweep", "model"}


@dataclass(frozen=True)
class ModelOverride:
    """A suite's settings for one model: dimension values to sweep, batch sizes."""

    dims: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    batch_sizes: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Suite:
    """A named selection of models; ``models`` may be ``("*",)`` for every model.

    ``requires`` tells a user what to install when none of its models is loaded (an
    optional extra of the plugin that provides them).
    """

    name: str
    models: tuple[str, ...]
    description: str = ""
    requires: str = ""
    overrides: Mapping[str, ModelOverride] = field(default_factory=dict)
    sweep: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))
        object.__setattr__(self, "sweep", MappingProxyType(dict(self.sweep)))

    @property
    def includes_all(self) -> bool:
        return ALL_MODELS in self.models


def _int_list(value: Any, where: str) -> tuple[int, ...]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(type(v) is int and v > 0 for v in values):
        raise SuiteError(f"{where} must be a positive integer or a list of them, got {value!r}")
    return tuple(values)


def _number(value: Any, where: str, low: float, high: float | None = None) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value < low
        or (high is not None and value >= high)
    ):
        raise SuiteError(f"{where} must be a number in range, got {value!r}")
    return float(value)


def _check_keys(
    table: Mapping[str, Any], allowed: set[str] | Mapping[str, str], where: str
) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise SuiteError(
            f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
        )


def _axis_value(axis: Axis, value: Any, where: str) -> Any:
    """A [sweep] value of ``axis``: integers, one or a list of its values, or a name."""
    if axis.most:
        return value if axis.auto and value == AUTO else _int_list(value, where)
    if axis.values is None:
        if not isinstance(value, str) or not value:
            raise SuiteError(f'{where} must be a {axis.name} name such as "{axis.default}"')
        return value
    if not axis.sweeps:
        if value not in axis.values:
            raise SuiteError(f"{where} must be one of {', '.join(axis.values)}")
        return value
    values = value if isinstance(value, list) else [value]
    bad = [v for v in values if v not in axis.values]
    if not values or bad:
        raise SuiteError(f"{where}: {bad or values!r} not in {', '.join(axis.values)}")
    return tuple(values)


def parse_sweep(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    _check_keys(table, SWEEP_KEYS, where)
    sweep: dict[str, Any] = {}
    for key, value in table.items():
        if key in _AXES:
            sweep[key] = _axis_value(_AXES[key], value, f"{where}.{key}")
        elif key == "target_precision":
            sweep[key] = _number(value, f"{where}.{key}", 1e-6, 1.0)
        elif key == "repeats":
            if type(value) is not int or value < 1:
                raise SuiteError(f"{where}.repeats must be an integer >= 1, got {value!r}")
            sweep[key] = value
        else:
            minimum = 0.0 if key in ("warmup_time", "min_time") else 1e-6
            sweep[key] = _number(value, f"{where}.{key}", minimum)
    return sweep


def load_suite_file(path: str | Path) -> Suite:
    """Read and validate one suite file; the suite is named after the file's stem."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise SuiteError(f"cannot read suite file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"suite file {path} is not valid TOML: {exc}") from None
    _check_keys(data, TOP_KEYS, str(path))
    name = data.get("name", path.stem)
    models = data.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        raise SuiteError(
            f"{path}: 'models' must be a non-empty list of model names "
            f'(or ["{ALL_MODELS}"] for every model)'
        )
    for key in ("description", "requires"):
        if not isinstance(data.get(key, ""), str):
            raise SuiteError(f"{path}: '{key}' must be a string, got {data[key]!r}")
    overrides = {}
    for model, table in data.get("model", {}).items():
        where = f"{path}: [model.{model}]"
        if model not in models and ALL_MODELS not in models:
            raise SuiteError(f"{where} configures a model the suite does not list in 'models'")
        if not isinstance(table, dict):
            raise SuiteError(f"{where} must be a table")
        _check_keys(table, MODEL_KEYS, where)
        dims = table.get("dims", {})
        if not isinstance(dims, dict):
            raise SuiteError(f"{where}.dims must be a table like {{ H = 64 }}")
        overrides[model] = ModelOverride(
            dims={k: _int_list(v, f"{where}.dims.{k}") for k, v in dims.items()},
            batch_sizes=(
                _int_list(table["batch_sizes"], f"{where}.batch_sizes")
                if "batch_sizes" in table
                else None
            ),
        )
    return Suite(
        name=name,
        models=tuple(models),
        description=data.get("description", ""),
        requires=data.get("requires", ""),
        overrides=overrides,
        sweep=parse_sweep(data.get("sweep", {}), f"{path}: [sweep]"),
        source=str(path),
    )
