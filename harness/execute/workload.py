"""A case's model, inputs and step, built in this process: what the worker times, the
profiler traces, an ab side times turn about, and asv or pytest-benchmark time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness.measure.devices import DTYPES, default_threads, synchronize
from harness.models.shapes import OutputShapeMismatch, shape_problems
from harness.models.spec import ModelSpec, flatten_outputs
from harness.sweep.plan import Case


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


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def frames_compiled() -> int:
    return int(torch._dynamo.utils.counters["frames"]["total"])


def graph_counts() -> dict[str, int]:
    """Graphs compiled and graph breaks since :func:`compile_workload` cleared the counters."""
    counters = torch._dynamo.utils.counters
    return {
        "graphs": int(counters["stats"]["unique_graphs"]),
        "graph_breaks": int(sum(counters["graph_break"].values())),
    }
