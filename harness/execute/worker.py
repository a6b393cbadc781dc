"""One case, measured in the current process: build, warm up, time, memory, FLOPs.

Under process isolation this runs in a fresh child per case (see
:mod:`harness.execute.isolation`); with ``--isolation none`` it runs in the harness itself.
A failure becomes a record (``error``, or ``oom`` for an allocator's refusal) so
the caller never has to tell exceptions apart.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch

from harness.execute.failure import error_message, error_traceback, failure_status
from harness.execute.workload import (
    Workload,
    checked_step,
    compile_workload,
    count_params,
    frames_compiled,
    graph_counts,
    prepare_workload,
)
from harness.measure.devices import DTYPES, default_threads, is_out_of_memory
from harness.measure.flops import count_flops, flops_fields
from harness.measure.memory import LiveTensorBytes, PeakMemory, tensor_bytes, warm_runtime
from harness.measure.timing import MeasureConfig, Measurement, heartbeat, measure, time_call
from harness.models.spec import ModelSpec
from harness.store.record import CaseRecord
from harness.sweep.plan import Case

PROBE_STEPS = 2


def peak_key(device: str, dtype: str) -> str:
    return f"{device}/{dtype}"


def _compile_stats(first_call: float, median: float, frames_after_first: int) -> dict[str, Any]:
    return {
        "time_s": max(0.0, first_call - median),
        "first_call_s": first_call,
        **graph_counts(),
        "recompiles": frames_compiled() - frames_after_first,
    }


def _state_bytes(workload: Workload) -> dict[str, int]:
    model, optimizer = workload.model, workload.optimizer
    state = (
        [t for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
        if optimizer
        else []
    )
    return {
        "param_bytes": tensor_bytes(model.parameters()),
        "buffer_bytes": tensor_bytes(model.buffers()),
        "grad_bytes": tensor_bytes(p.grad for p in model.parameters() if p.grad is not None),
        "optimizer_state_bytes": tensor_bytes(state),
    }


def _held(workload: Workload) -> list[torch.Tensor]:
    """The tensors a step starts with: the model's parameters and buffers, its inputs."""
    return [*workload.model.parameters(), *workload.model.buffers(), *workload.inputs]


@functools.cache
def initialise_runtime() -> None:
    """Pay one-time costs (the FLOP counter's lazy imports, ~70 MiB) before any baseline,
    so a case's peak memory is the model's, not the harness's start-up."""
    count_flops(lambda: torch.ones(2, 2) @ torch.ones(2, 2))


def unmeasured(case: Case, status: str, error: str, **known: Any) -> CaseRecord:
    """The record of a case that yielded no measurement: skipped, crashed, timed out."""
    return CaseRecord.of_case(case, status=status, error=error, **known)


def latency_fields(case: Case, result: Measurement) -> dict[str, Any]:
    """A record's latency (raw samples kept) and throughput, from one measurement."""
    return {
        "latency": {
            "unit": "s",
            **result.stats.to_dict(),
            "per": result.per,
            "block_size": result.block_size,
            "iterations": result.iterations,
            "blocks": len(result.samples),
            "warmup_iters": result.warmup_iters,
            "first_call": result.first_call,
            "samples": list(result.samples),
        },
        "throughput": case.batch_size / result.stats.median,
    }


def measure_case(
    spec: ModelSpec, case: Case, config: MeasureConfig, peaks: Mapping[str, float] | None = None
) -> CaseRecord:
    """Measure ``case`` (whose batch size is set); exceptions become the record's status."""
    torch.set_num_threads(case.threads or default_threads())
    record = CaseRecord.of_case(case, threads=torch.get_num_threads())
    batch_size = case.batch_size
    device = torch.device(case.device)
    initialise_runtime()
    try:
        # outside the memory peak, at the case's threads: see timing.heartbeat
        before = heartbeat(device)
        with PeakMemory(device, DTYPES[case.dtype]) as memory:
            workload = prepare_workload(spec, case, batch_size)
            record = replace(record, params=count_params(workload.model))
            with workload.context:
                with LiveTensorBytes(device, _held(workload)) as tensors:  # not when timed
                    if case.compile_mode == "none":
                        checked_step(workload.model, workload, spec, case)()  # the first call
                    flops = count_flops(workload.step)  # eager, before any compilation
                if case.compile_mode != "none":
                    compiled = compile_workload(workload, case, spec)
                    # compilation included; the compiled model's outputs are checked
                    first_call = time_call(checked_step(compiled, workload, spec, case), device)
                    frames = frames_compiled()
                result = measure(workload.step, device, config)
        after = heartbeat(device)
        median = result.stats.median
        peak = (peaks or {}).get(peak_key(case.device, case.dtype))
        return replace(
            record,
            heartbeat={"unit": "s", "before": before, "after": after},
            **latency_fields(case, result),
            memory={**memory.result, "tensor_peak_bytes": tensors.peak, **_state_bytes(workload)},
            flops=flops_fields(flops, median, peak),
            compile=(
                _compile_stats(first_call, median, frames) if case.compile_mode != "none" else None
            ),
        )
    except Exception as exc:  # a model's failure is data, not a crash of the sweep
        return replace(
            record,
            status=failure_status(exc),
            error=error_message(exc),
            traceback=error_traceback(exc),
        )


def probe_case(spec: ModelSpec, case: Case, batch_size: int) -> str:
    """Run a few steps at ``batch_size``: ``ok``, ``oom`` or ``error: ...`` (batch search)."""
    torch.set_num_threads(case.threads or default_threads())
    try:
        # the thread pool starts now, while memory is free: under --memory-limit, a pool
        # started by the model's first kernel could not map its threads' stacks
        warm_runtime(torch.device(case.device), DTYPES[case.dtype])
        workload = prepare_workload(spec, case, batch_size)
        with workload.context:
            if case.compile_mode != "none":
                compile_workload(workload, case, spec)
            for _ in range(PROBE_STEPS):
                workload.step()
    except Exception as exc:
        return "oom" if is_out_of_memory(exc) else f"error: {error_message(exc)}"
    return "ok"
