"""One case, measured in the current process: build, warm up, time, memory, FLOPs.

Under process isolation this runs in a fresh child per case (see
:mod:`harness.isolation`); with ``--isolation none`` it runs in the harness itself.
A failure becomes a record (``error``, or ``oom`` for an allocator's refusal) so
the caller never has to tell exceptions apart.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness.devices import DTYPES, default_threads, is_out_of_memory, synchronize
from harness.flops import count_flops
from harness.memory import PeakMemory, tensor_bytes
from harness.plan import Case
from harness.spec import ModelSpec, flatten_outputs
from harness.timing import MeasureConfig, Measurement, heartbeat, measure, time_call

MAX_ERROR_CHARS = 500
PROBE_STEPS = 2


def error_message(exc: BaseException) -> str:
    lines = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return lines[0][:MAX_ERROR_CHARS]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def peak_key(device: str, dtype: str) -> str:
    return f"{device}/{dtype}"


@dataclass
class Workload:
    """A ready-to-call step plus what it was built from."""

    step: Callable[[], object]
    model: nn.Module
    inputs: tuple[torch.Tensor, ...]
    optimizer: torch.optim.Optimizer | None
    context: contextlib.ExitStack


def _step(forward: Callable[..., Any], workload: Workload, spec: ModelSpec) -> Callable[[], object]:
    """Inference calls ``forward``; training adds loss, backward and an optimizer step."""
    inputs, optimizer = workload.inputs, workload.optimizer
    if optimizer is None:
        return lambda: forward(*inputs)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        spec.compute_loss(flatten_outputs(forward(*inputs))).backward()
        optimizer.step()

    return train_step


def prepare_workload(spec: ModelSpec, case: Case, batch_size: int) -> Workload:
    device = torch.device(case.device)
    dtype = DTYPES[case.dtype]
    # "cast" runs model and inputs in the dtype; "amp" keeps float32 weights under autocast.
    storage = dtype if case.precision == "cast" else torch.float32
    model = spec.build(case.dims).to(device=device, dtype=storage)
    inputs = spec.example_inputs(batch_size, case.dims, device=device, dtype=storage)
    context = contextlib.ExitStack()
    if case.precision == "amp" and dtype != torch.float32:
        context.enter_context(torch.autocast(device.type, dtype=dtype))
    optimizer = None
    if case.mode == "infer":
        model.eval()
        context.enter_context(torch.inference_mode())
    else:
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    workload = Workload(lambda: None, model, inputs, optimizer, context)
    workload.step = _step(model, workload, spec)
    return workload


def compile_workload(workload: Workload, case: Case, spec: ModelSpec) -> None:
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = torch.compile(workload.model, backend=case.backend,
                             mode=None if case.compile_mode == "default" else case.compile_mode)
    workload.step = _step(compiled, workload, spec)


@contextlib.contextmanager
def prepared(spec: ModelSpec, case: Case) -> Iterator[Callable[[], object]]:
    """The step :func:`measure_case` times, for another timer (asv, pytest-benchmark).

    Built and, for a compiled case, compiled, then called once, so neither building
    nor compilation lands in the timer's first sample; it runs in the case's context
    (inference mode, autocast) until the block ends. On an accelerator the step also
    waits for the device, since those timers never synchronise.
    """
    torch.set_num_threads(case.threads or default_threads())
    workload = prepare_workload(spec, case, case.batch_size)
    with workload.context:
        if case.compile_mode != "none":
            compile_workload(workload, case, spec)
        device = torch.device(case.device)
        step = workload.step if device.type == "cpu" else _synchronised(workload.step, device)
        step()
        yield step


def _synchronised(step: Callable[[], object], device: torch.device) -> Callable[[], None]:
    def call() -> None:
        step()
        synchronize(device)
    return call


def _frames_compiled() -> int:
    return int(torch._dynamo.utils.counters["frames"]["total"])


def graph_counts() -> dict[str, int]:
    """Graphs compiled and graph breaks since :func:`compile_workload` cleared the counters."""
    counters = torch._dynamo.utils.counters
    return {"graphs": int(counters["stats"]["unique_graphs"]),
            "graph_breaks": int(sum(counters["graph_break"].values()))}


def _compile_stats(first_call: float, median: float, frames_after_first: int) -> dict[str, Any]:
    return {"time_s": max(0.0, first_call - median), "first_call_s": first_call,
            **graph_counts(), "recompiles": _frames_compiled() - frames_after_first}


def _state_bytes(workload: Workload) -> dict[str, int]:
    model, optimizer = workload.model, workload.optimizer
    state = [t for s in optimizer.state.values() for t in s.values()
             if isinstance(t, torch.Tensor)] if optimizer else []
    return {"param_bytes": tensor_bytes(model.parameters()),
            "buffer_bytes": tensor_bytes(model.buffers()),
            "grad_bytes": tensor_bytes(p.grad for p in model.parameters() if p.grad is not None),
            "optimizer_state_bytes": tensor_bytes(state)}


@functools.cache
def initialise_runtime() -> None:
    """Pay one-time costs (the FLOP counter's lazy imports, ~70 MiB) before any baseline,
    so a case's peak memory is the model's, not the harness's start-up."""
    count_flops(lambda: torch.ones(2, 2) @ torch.ones(2, 2))


def base_record(case: Case) -> dict[str, Any]:
    return {"model": case.model, "suite": case.suite, "batch_size": case.batch_size,
            "device": case.device, "dtype": case.dtype, "precision": case.precision,
            "compile_mode": case.compile_mode,
            "backend": case.backend if case.compile_mode != "none" else None,
            "mode": case.mode, "dims": dict(case.dims), "repeat": case.repeat, "status": "ok",
            "error": None}


def unmeasured(case: Case, status: str, error: str) -> dict[str, Any]:
    """The record of a case that yielded no measurement: skipped, crashed, timed out."""
    return {**base_record(case), "status": status, "error": error}


def failure(record: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    status = "oom" if is_out_of_memory(exc) else "error"
    return {**record, "status": status, "error": error_message(exc)}


def latency_fields(case: Case, result: Measurement) -> dict[str, Any]:
    """A record's latency (raw samples kept) and throughput, from one measurement."""
    return {"latency": {"unit": "s", **result.stats.to_dict(), "block_size": result.block_size,
                        "iterations": result.iterations, "blocks": len(result.samples),
                        "warmup_iters": result.warmup_iters, "first_call": result.first_call,
                        "samples": list(result.samples)},
            "throughput": case.batch_size / result.stats.median}


def measure_case(spec: ModelSpec, case: Case, config: MeasureConfig,
                 peaks: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Measure ``case`` (whose batch size is set); exceptions become the record's status."""
    record = base_record(case)
    torch.set_num_threads(case.threads or default_threads())
    record["threads"] = torch.get_num_threads()
    batch_size = case.batch_size
    device = torch.device(case.device)
    initialise_runtime()
    try:
        # outside the memory peak, at the case's threads: see timing.heartbeat
        before = heartbeat(device)
        with PeakMemory(device) as memory:
            workload = prepare_workload(spec, case, batch_size)
            record["params"] = count_params(workload.model)
            with workload.context:
                flops = count_flops(workload.step)  # eager, before any compilation
                if case.compile_mode != "none":
                    compile_workload(workload, case, spec)
                    first_call = time_call(workload.step, device)  # compilation included
                    frames = _frames_compiled()
                result = measure(workload.step, device, config)
        record["heartbeat"] = {"unit": "s", "before": before, "after": heartbeat(device)}
        stats = result.stats
        record.update(latency_fields(case, result))
        record["memory"] = {**memory.result, **_state_bytes(workload)}
        peak = (peaks or {}).get(peak_key(case.device, case.dtype))
        record["flops"] = {"per_step": flops, "achieved_per_s": flops / stats.median,
                           "peak_per_s": peak,
                           "utilisation": flops / stats.median / peak if peak else None}
        if case.compile_mode != "none":
            record["compile"] = _compile_stats(first_call, stats.median, frames)
    except Exception as exc:  # a model's failure is data, not a crash of the sweep
        return failure(record, exc)
    return record


def probe_case(spec: ModelSpec, case: Case, batch_size: int) -> str:
    """Run a few steps at ``batch_size``: ``ok``, ``oom`` or ``error: ...`` (batch search)."""
    try:
        workload = prepare_workload(spec, case, batch_size)
        with workload.context:
            if case.compile_mode != "none":
                compile_workload(workload, case, spec)
            for _ in range(PROBE_STEPS):
                workload.step()
    except Exception as exc:
        return "oom" if is_out_of_memory(exc) else f"error: {error_message(exc)}"
    return "ok"
