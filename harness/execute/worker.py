"""One case, measured in the current process: build, warm up, time, memory, FLOPs.

Under process isolation this runs in a fresh child per case (see
:mod:`harness.execute.isolation`); with ``--isolation none`` it runs in the harness itself.
A failure becomes a record (``error``, or ``oom`` for an allocator's refusal) so
the caller never has to tell exceptions apart.
"""

from __future__ import annotations

import contextlib
import functools
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from harness.measure.devices import DTYPES, default_threads, is_out_of_memory, synchronize
from harness.measure.flops import count_flops, flops_fields
from harness.measure.memory import LiveTensorBytes, PeakMemory, tensor_bytes, warm_runtime
from harness.measure.timing import MeasureConfig, Measurement, heartbeat, measure, time_call
from harness.models.shapes import OutputShapeMismatch, shape_problems
from harness.models.spec import ModelSpec, flatten_outputs
from harness.store.record import CaseRecord
from harness.sweep.plan import Case

MAX_ERROR_CHARS = 500
MAX_TRACEBACK_CHARS = 4000
PROBE_STEPS = 2


def error_message(exc: BaseException) -> str:
    lines = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return lines[0][:MAX_ERROR_CHARS]


def error_traceback(exc: BaseException) -> str:
    """Where a case failed, for the plugin's author (``--debug`` shows it): the innermost
    frames, then the one-line message; bounded however deep the stack or long the text."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    if len(frames) > MAX_TRACEBACK_CHARS:
        frames = "...\n" + frames[-MAX_TRACEBACK_CHARS:].partition("\n")[2]
    return frames + error_message(exc)


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


def compile_workload(workload: Workload, case: Case, spec: ModelSpec) -> nn.Module:
    """Make the workload's step call the compiled model; returns the compiled model."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = torch.compile(
        workload.model,
        backend=case.backend,
        mode=None if case.compile_mode == "default" else case.compile_mode,
    )
    workload.step = _step(compiled, workload, spec)
    return compiled


def checked_step(
    forward: Callable[..., Any], workload: Workload, spec: ModelSpec, case: Case
) -> Callable[[], object]:
    """The step, calling ``forward`` and failing with :class:`OutputShapeMismatch` unless
    it returns the declared shapes: every case's first call goes through it (eager or
    compiled), so a model that returns other shapes than it declares is never timed."""

    def checked(*inputs: torch.Tensor) -> Any:
        outputs = forward(*inputs)
        observed = [tuple(t.shape) for t in flatten_outputs(outputs)]
        expected = spec.expected_shapes(case.batch_size, case.dims)
        problems = shape_problems(spec.outputs, expected, observed, case.batch_size)
        if problems:
            raise OutputShapeMismatch("; ".join(problems))
        return outputs

    return _step(checked, workload, spec)


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
        forward = (
            compile_workload(workload, case, spec)
            if case.compile_mode != "none"
            else workload.model
        )
        first, step = checked_step(forward, workload, spec, case), workload.step
        device = torch.device(case.device)
        if device.type != "cpu":
            first, step = _synchronised(first, device), _synchronised(step, device)
        first()
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
    return {
        "graphs": int(counters["stats"]["unique_graphs"]),
        "graph_breaks": int(sum(counters["graph_break"].values())),
    }


def _compile_stats(first_call: float, median: float, frames_after_first: int) -> dict[str, Any]:
    return {
        "time_s": max(0.0, first_call - median),
        "first_call_s": first_call,
        **graph_counts(),
        "recompiles": _frames_compiled() - frames_after_first,
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


def failure_status(exc: BaseException) -> str:
    """A failed case's status: ``oom``, ``shape_mismatch`` or ``error``."""
    if isinstance(exc, OutputShapeMismatch):
        return "shape_mismatch"
    return "oom" if is_out_of_memory(exc) else "error"


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
                    frames = _frames_compiled()
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
