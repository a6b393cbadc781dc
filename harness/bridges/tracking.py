"""What is tracked over commits: the suites one setting names, as CPU cases.

asv's benchmarks (``benchmarks/``) and the nightly script read the same setting, so
what asv graphs and what the nightly gate compares are the same cases, and a model
that joins a tracked suite (``smoke`` holds every model) is tracked from then on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import UsageError
from harness.measure.timing import MeasureConfig
from harness.models.registry import Registry
from harness.sweep.identity import CaseKey
from harness.sweep.plan import Case, Request, build_plan

SUITES_ENV = "HARNESS_TRACKED_SUITES"
DEFAULT_SUITES = ("smoke",)
DEVICE = "cpu"  # asv and the nightly CPU job; accelerators are swept by `harness run`
# How a case appears among asv's parameters; the first three always, the others where
# a model's cases vary in them. benchmarks/ and the import of asv's results share it.
PARAM_AXES: dict[str, Callable[[Case], Any]] = {
    "dims": lambda case: ",".join(f"{k}={case.dims[k]}" for k in case.chosen),
    "mode": lambda case: case.mode,
    "batch_size": lambda case: case.batch_size,
    "dtype": lambda case: case.dtype,
    "compile_mode": lambda case: case.compile_mode,
}
ALWAYS = ("batch_size", "dtype", "compile_mode")


@dataclass(frozen=True)
class TrackedCase:
    """A case with the timing settings of the suite that tracks it."""

    case: Case
    config: MeasureConfig


def tracked_suites() -> tuple[str, ...]:
    """The suites named by $HARNESS_TRACKED_SUITES (comma-separated), else ``smoke``."""
    names = [n.strip() for n in os.environ.get(SUITES_ENV, "").split(",") if n.strip()]
    return tuple(names) or DEFAULT_SUITES


def tracked_cases(registry: Registry, suites: Sequence[str] | None = None) -> list[TrackedCase]:
    """Each suite's cases on the CPU, in suite order; a case in two suites counts once."""
    cases: dict[CaseKey, TrackedCase] = {}
    for name in suites or tracked_suites():
        plan = build_plan(registry, Request(suite=name, devices=(DEVICE,)))
        if any(case.batch_size is None for case in plan.cases):
            raise UsageError(
                f"suite {name!r} searches its batch sizes ('auto'); a tracked "
                "suite needs fixed ones to be comparable over commits"
            )
        for case in plan.cases:
            cases.setdefault(case.key(), TrackedCase(case, plan.measure))
    return list(cases.values())


@dataclass(frozen=True)
class ModelParameters:
    """A model's tracked cases as asv parameters: names, values, the case of each tuple."""

    model: str
    names: list[str]
    values: list[list[Any]]
    cases: dict[tuple, TrackedCase]


def asv_parameters(tracked: Sequence[TrackedCase]) -> dict[str, ModelParameters]:
    """One entry per model, in the order the cases come."""
    by_model: dict[str, list[TrackedCase]] = {}
    for item in tracked:
        by_model.setdefault(item.case.model, []).append(item)
    models = {}
    for model, cases in by_model.items():
        values = {
            axis: list(dict.fromkeys(get(t.case) for t in cases))
            for axis, get in PARAM_AXES.items()
        }
        names = [axis for axis in PARAM_AXES if axis in ALWAYS or len(values[axis]) > 1]
        keyed = {tuple(PARAM_AXES[axis](t.case) for axis in names): t for t in cases}
        models[model] = ModelParameters(model, names, [values[axis] for axis in names], keyed)
    return models
