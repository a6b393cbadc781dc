"""From a command line (suite, models, batch sizes, dimensions) to the list of cases.

Everything that can be wrong with the request (an unknown model, a dimension no
selected model has, a value that breaks a constraint) is found here, before the
first case runs, so a typo never costs a half-finished sweep.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError, UsageError
from harness.registry import Registry, did_you_mean, expand_dims
from harness.suites import Suite
from harness.timing import MeasureConfig


@dataclass(frozen=True)
class Case:
    """One measurement: a model at one batch size and set of dimension values.

    ``dims`` holds every dimension's value, defaults included, so a record stays
    unambiguous if a default changes later; ``chosen`` names those set explicitly.
    """

    model: str
    batch_size: int
    dims: Mapping[str, int] = field(default_factory=dict)
    chosen: tuple[str, ...] = ()
    suite: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    compile_mode: str = "none"
    mode: str = "infer"

    @property
    def label(self) -> str:
        dims = "".join(f",{k}={self.dims[k]}" for k in self.chosen)
        return f"{self.model}[B={self.batch_size}{dims}]"

    def key(self) -> tuple[Any, ...]:
        """What identifies a case across runs: everything but the suite it came from."""
        return (self.model, self.batch_size, tuple(sorted(self.dims.items())), self.device,
                self.dtype, self.compile_mode, self.mode)


@dataclass(frozen=True)
class Plan:
    cases: tuple[Case, ...]
    measure: MeasureConfig
    label: str


def select_models(registry: Registry, suite: Suite | None, models: Sequence[str]) -> list[str]:
    """The suite's models (optionally narrowed to ``models``), or ``models`` alone."""
    if suite is None:
        if not models:
            raise UsageError("nothing to run: give --suite NAME or --model NAME "
                             f"(suites: {', '.join(sorted(registry.suites))})")
        return [registry.model(m).spec.name for m in dict.fromkeys(models)]
    in_suite = registry.suite_models(suite)
    for name in models:
        registry.model(name)
        if name not in in_suite:
            raise UsageError(f"model {name!r} is not in suite {suite.name!r}"
                             f"{did_you_mean(name, in_suite)}")
    return [m for m in in_suite if m in models] if models else in_suite


def build_plan(registry: Registry, *, suite_name: str | None = None,
               models: Sequence[str] = (), batch_sizes: Sequence[int] | None = None,
               dims: Mapping[str, Sequence[int]] | None = None,
               measure: Mapping[str, Any] | None = None) -> Plan:
    """Cases in suite order; command-line values override the suite's, which override specs'."""
    suite = registry.suite(suite_name) if suite_name else None
    names = select_models(registry, suite, models)
    dims = dict(dims or {})
    for dim in dims:
        if not any(dim in registry.model(n).spec.dims for n in names):
            raise UsageError(f"no selected model has a dimension {dim!r}; "
                             "'harness list' shows each model's dimensions")
    cases = []
    for name in names:
        spec = registry.model(name).spec
        override = suite.overrides.get(name) if suite else None
        model_dims = {**(override.dims if override else {}),
                      **{k: v for k, v in dims.items() if k in spec.dims}}
        sizes = (batch_sizes or (override and override.batch_sizes)
                 or (suite and suite.sweep.get("batch_sizes")) or spec.batch_sizes)
        for combo in expand_dims(model_dims):
            try:
                resolved = spec.resolve_dims(combo)
            except HarnessError as exc:
                raise UsageError(str(exc)) from None
            cases.extend(Case(name, b, resolved, tuple(combo), suite.name if suite else None)
                         for b in sizes)
    settings = {k: v for k, v in (suite.sweep if suite else {}).items() if k != "batch_sizes"}
    settings.update({k: v for k, v in (measure or {}).items() if v is not None})
    try:
        config = MeasureConfig(**settings)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    label = suite.name if suite else "-".join(names[:3]) + ("-etc" if len(names) > 3 else "")
    return Plan(tuple(cases), config, label)
