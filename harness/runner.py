"""Executes a plan: builds each model, measures each case, records each outcome.

A model that raises is recorded with status ``error`` and its message, and the
sweep goes on; one broken model must not cost a night of results.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from harness.plan import Case, Plan
from harness.registry import Registry
from harness.results import ResultsWriter
from harness.spec import ModelSpec
from harness.timing import MeasureConfig, measure

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
MAX_ERROR_CHARS = 500


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def error_message(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
    return text[:MAX_ERROR_CHARS]


class _ModelCache:
    """Keeps the last built model: consecutive cases usually differ only in batch size."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._model: nn.Module | None = None

    def get(self, spec: ModelSpec, case: Case) -> nn.Module:
        key = (case.model, tuple(sorted(case.dims.items())), case.device, case.dtype)
        if key != self._key:
            self._key, self._model = None, None
            gc.collect()  # free the previous model before building the next
            model = spec.build(case.dims).to(device=case.device, dtype=DTYPES[case.dtype])
            self._key, self._model = key, model.eval()
        return self._model


def run_case(spec: ModelSpec, case: Case, config: MeasureConfig,
             cache: _ModelCache) -> dict[str, Any]:
    """Measure one inference case; exceptions become an ``error`` record."""
    record: dict[str, Any] = {
        "model": case.model, "suite": case.suite, "batch_size": case.batch_size,
        "device": case.device, "dtype": case.dtype, "compile_mode": case.compile_mode,
        "mode": case.mode, "dims": dict(case.dims), "status": "ok", "error": None,
    }
    started = time.perf_counter()
    try:
        model = cache.get(spec, case)
        record["params"] = count_params(model)
        inputs = spec.example_inputs(case.batch_size, case.dims, device=case.device,
                                     dtype=DTYPES[case.dtype])
        with torch.inference_mode():
            result = measure(lambda: model(*inputs), case.device, config)
        stats = result.stats
        record["latency"] = {
            "unit": "s", **stats.to_dict(), "block_size": result.block_size,
            "iterations": result.iterations, "warmup_iters": result.warmup_iters,
            "first_call": result.first_call, "samples": list(result.samples),
        }
        record["throughput"] = case.batch_size / stats.median
    except Exception as exc:  # a model's failure is data, not a crash of the sweep
        record.update(status="error", error=error_message(exc))
    record["wall_time"] = time.perf_counter() - started
    return record


def execute(plan: Plan, registry: Registry, writer: ResultsWriter,
            on_case: Callable[[int, Case], None] | None = None) -> Iterator[dict[str, Any]]:
    """Run every case of ``plan``, writing each record as soon as it exists."""
    cache = _ModelCache()
    for index, case in enumerate(plan.cases):
        if on_case:
            on_case(index, case)
        registered = registry.model(case.model)
        record = {"plugin": registered.plugin,
                  **run_case(registered.spec, case, plan.measure, cache)}
        writer.write_case(record)
        yield record
