"""``harness check``: do models return the shapes their specs declare?

The declared shapes are what the rest of the harness trusts (example inputs, sweeps
over dimensions), so a mismatch is reported with the expression, its evaluated
value and what the model actually returned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from harness.execute.failure import error_message
from harness.execute.workload import count_params
from harness.models.shapes import shape_problems
from harness.models.spec import ModelSpec, flatten_outputs

CHECK_BATCH_SIZES = (1, 2)
REPORTED_BATCH_SIZE = 2


@dataclass(frozen=True)
class CheckResult:
    """The outcome of checking one model; ``expected``/``observed`` are at batch size 2,
    None where unknown (a shape that does not evaluate, a model that never returned)."""

    name: str
    plugin: str
    params: int | None
    dims: Mapping[str, int]
    expected: tuple[tuple[int, ...], ...] | None
    observed: tuple[tuple[int, ...], ...] | None
    training: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "plugin": self.plugin,
            "ok": self.ok,
            "params": self.params,
            "dims": dict(self.dims),
            "expected": _lists(self.expected),
            "observed": _lists(self.observed),
            "training": self.training,
            "problems": list(self.problems),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        """The inverse of :meth:`to_dict`: a result sent back by a check's own process."""
        return cls(
            data["name"],
            data["plugin"],
            data["params"],
            data["dims"],
            _tuples(data["expected"]),
            _tuples(data["observed"]),
            data["training"],
            tuple(data["problems"]),
        )


def _lists(shapes: Sequence[Sequence[int]] | None) -> list[list[int]] | None:
    return None if shapes is None else [list(s) for s in shapes]


def _tuples(shapes: Sequence[Sequence[int]] | None) -> tuple[tuple[int, ...], ...] | None:
    return None if shapes is None else tuple(tuple(s) for s in shapes)


def unchecked(name: str, plugin: str, dims: Mapping[str, int], problem: str) -> CheckResult:
    """The row of a model whose check gave no result: its process crashed, timed out or
    could not load the plugins."""
    return CheckResult(name, plugin, None, dims, None, None, "skipped", (problem,))


def _training_step(spec: ModelSpec, model: torch.nn.Module, dims: Mapping[str, int]) -> str | None:
    """Forward, loss, backward in train mode; the problem found, or None."""
    model.train()
    inputs = spec.example_inputs(REPORTED_BATCH_SIZE, dims)
    loss = spec.compute_loss(flatten_outputs(model(*inputs)))
    if loss.ndim != 0 or not torch.isfinite(loss):
        return f"training loss must be a finite scalar, got shape {tuple(loss.shape)} value {loss}"
    loss.backward()
    params = list(model.parameters())
    if params and all(p.grad is None for p in params):
        return "training step produced no gradient for any parameter"
    return None


def check_model(spec: ModelSpec, plugin: str, dims: Mapping[str, int] | None = None) -> CheckResult:
    """Build on CPU, run a forward pass at two batch sizes and a training step.

    Whatever fails, a shape expression included, is this model's problem: its row says
    so and the other models are still checked.
    """
    resolved = {**spec.default_dims, **(dims or {})}
    problems: list[str] = []
    params = expected = observed = None
    training = "skipped"
    try:
        resolved = spec.resolve_dims(dims)
        model = spec.build(resolved).eval()
        params = count_params(model)
        expected = tuple(spec.expected_shapes(REPORTED_BATCH_SIZE, resolved))
        with torch.no_grad():
            for batch_size in CHECK_BATCH_SIZES:
                outputs = flatten_outputs(model(*spec.example_inputs(batch_size, resolved)))
                shapes = tuple(tuple(t.shape) for t in outputs)
                problems += shape_problems(
                    spec.outputs, spec.expected_shapes(batch_size, resolved), shapes, batch_size
                )
                if batch_size == REPORTED_BATCH_SIZE:
                    observed = shapes
        if spec.trainable:
            problem = _training_step(spec, model, resolved)
            training = "failed" if problem else "ok"
            problems += [problem] if problem else []
    except Exception as exc:  # report the model's failure, check the others
        if training == "skipped" and spec.trainable and observed is not None:
            training = "failed"
        problems.append(error_message(exc))
    return CheckResult(
        spec.name, plugin, params, resolved, expected, observed, training, tuple(problems)
    )
