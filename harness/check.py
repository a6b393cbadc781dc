"""``harness check``: do models return the shapes their specs declare?

The declared shapes are what the rest of the harness trusts (example inputs, sweeps
over dimensions), so a mismatch is reported with the expression, its evaluated
value and what the model actually returned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from harness.worker import count_params, error_message
from harness.spec import ModelSpec, flatten_outputs

CHECK_BATCH_SIZES = (1, 2)
REPORTED_BATCH_SIZE = 2


@dataclass(frozen=True)
class CheckResult:
    """The outcome of checking one model; ``expected``/``observed`` are at batch size 2."""

    name: str
    plugin: str
    params: int | None
    dims: Mapping[str, int]
    expected: tuple[tuple[int, ...], ...]
    observed: tuple[tuple[int, ...], ...] | None
    training: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"name": self.name, "plugin": self.plugin, "ok": self.ok, "params": self.params,
                "dims": dict(self.dims), "expected": [list(s) for s in self.expected],
                "observed": None if self.observed is None else [list(s) for s in self.observed],
                "training": self.training, "problems": list(self.problems)}


def _compare(spec: ModelSpec, batch_size: int, dims: Mapping[str, int],
             outputs: Sequence[torch.Tensor]) -> list[str]:
    expected = spec.expected_shapes(batch_size, dims)
    if len(outputs) != len(expected):
        return [f"at B={batch_size} returned {len(outputs)} tensor(s), "
                f"spec declares {len(expected)} output(s)"]
    problems = []
    for index, (declared, want, tensor) in enumerate(zip(spec.outputs, expected, outputs)):
        got = tuple(tensor.shape)
        if got != want:
            problems.append(f"output {index} at B={batch_size}: expected {declared} = "
                            f"{want}, got {got}")
    return problems


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
    """Build on CPU, run a forward pass at two batch sizes and a training step."""
    resolved = spec.resolve_dims(dims)
    expected = tuple(spec.expected_shapes(REPORTED_BATCH_SIZE, resolved))
    problems: list[str] = []
    params = observed = None
    training = "skipped"
    try:
        model = spec.build(resolved).eval()
        params = count_params(model)
        with torch.no_grad():
            for batch_size in CHECK_BATCH_SIZES:
                outputs = flatten_outputs(model(*spec.example_inputs(batch_size, resolved)))
                problems += _compare(spec, batch_size, resolved, outputs)
                if batch_size == REPORTED_BATCH_SIZE:
                    observed = tuple(tuple(t.shape) for t in outputs)
        if spec.trainable:
            problem = _training_step(spec, model, resolved)
            training = "failed" if problem else "ok"
            problems += [problem] if problem else []
    except Exception as exc:  # report the model's failure, check the others
        if training == "skipped" and spec.trainable and observed is not None:
            training = "failed"
        problems.append(error_message(exc))
    return CheckResult(spec.name, plugin, params, resolved, expected, observed, training,
                       tuple(problems))
