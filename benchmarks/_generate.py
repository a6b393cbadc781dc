"""Benchmark classes made from the registry's tracked cases, one per model and module."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

from harness.bridges.tracking import TrackedCase, asv_parameters, tracked_cases
from harness.models.registry import load_registry

REGISTRY = load_registry()
MODELS = asv_parameters(tracked_cases(REGISTRY))


class ModelBenchmark:
    """What the generated classes share: their model and its cases by parameters."""

    model: str
    cases: dict[tuple, TrackedCase]
    timeout = 600.0  # a compiled case compiles in setup

    def tracked(self, params: Sequence[Any]) -> TrackedCase:
        """The case of these parameters; asv shows a combination none has as skipped."""
        try:
            return self.cases[tuple(params)]
        except KeyError:
            raise NotImplementedError(f"{self.model}{tuple(params)} is not tracked") from None


def generate(
    namespace: MutableMapping[str, Any], base: Callable[[list[TrackedCase]], type[ModelBenchmark]]
) -> None:
    """Add a class per tracked model to ``namespace``, derived from ``base(its cases)``."""
    for model, params in MODELS.items():
        namespace[model] = type(
            model,
            (base(list(params.cases.values())),),
            {
                "__module__": namespace["__name__"],
                "model": model,
                "cases": params.cases,
                "params": params.values,
                "param_names": params.names,
            },
        )
