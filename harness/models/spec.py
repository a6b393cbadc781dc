"""The model contract: what a plugin declares about each architecture.

A :class:`ModelSpec` is everything the harness needs to build a model, feed it, and
know what it must return, without running it: the constructor and its seed
configuration, symbolic input and output shapes, named dimensions and their
constraints. Specs are frozen so a registry can hand them out without copying.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import torch
from torch import nn

from harness.errors import HarnessError, ShapeError
from harness.models.shapes import Constraint, Expr, Shape

BATCH = "B"
"""The reserved dimension name for the batch size; every spec may use it."""

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
DTYPE_KINDS = ("float", "index")


class SpecError(HarnessError):
    """A model spec that breaks the contract (bad name, undeclared dimension, ...)."""


@dataclass(frozen=True)
class Dim:
    """A named dimension with its default value.

    ``kwarg`` names the constructor keyword the value is passed to, for dimensions
    that change the architecture (a channel width, a depth, an image size feeding a
    ``Linear``). Dimensions without one only shape the example inputs.
    """

    default: int
    kwarg: str | None = None
    doc: str = ""


@dataclass(frozen=True)
class Input:
    """One positional input of the model's ``forward``.

    ``dtype`` is ``"float"`` (standard normal values in the run's dtype) or
    ``"index"`` (int64 values in ``[low, high)``, e.g. token ids below a vocabulary
    size ``high="V"``).
    """

    name: str
    shape: Shape | str | Sequence[str | int]
    dtype: Literal["float", "index"] = "float"
    high: Expr | str | int | None = None
    low: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", Shape.parse(self.shape))
        if self.high is not None and not isinstance(self.high, Expr):
            object.__setattr__(self, "high", Expr.parse(self.high))
        if self.dtype not in DTYPE_KINDS:
            raise SpecError(
                f"input {self.name!r}: dtype must be one of {DTYPE_KINDS}, got {self.dtype!r}"
            )
        if self.dtype == "index" and self.high is None:
            raise SpecError(
                f"input {self.name!r}: index inputs need 'high', the exclusive "
                "upper bound of their values (e.g. a vocabulary size)"
            )

    @property
    def names(self) -> frozenset[str]:
        return self.shape.names | (self.high.names if self.high is not None else frozenset())

    def make(
        self,
        env: Mapping[str, int],
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """An example tensor at the sizes ``env`` gives (a batch size and dimensions)."""
        size = self.shape.evaluate(env)
        if self.dtype == "index":
            high = self.high.evaluate(env)
            values = torch.randint(self.low, high, size, generator=generator)
            return values.to(device)
        return torch.randn(size, generator=generator).to(device=device, dtype=dtype)


def flatten_outputs(output: Any) -> list[torch.Tensor]:
    """Tensors of a (possibly nested) tuple/list output in order, one per declared shape."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in flatten_outputs(item)]
    raise TypeError(f"model returned {type(output).__name__}; expected tensors or tuples of them")


def mean_of_outputs(outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Default training loss: the sum of the means of the floating-point outputs."""
    terms = [o.float().mean() for o in outputs if o.is_floating_point()]
    if not terms:
        raise HarnessError(
            "no floating-point output to build a loss from; "
            "declare a loss or trainable=False in the spec"
        )
    return torch.stack(terms).sum()


def _normalise_dims(dims: Mapping[str, int | Dim]) -> Mapping[str, Dim]:
    out = {}
    for name, dim in dims.items():
        if not isinstance(dim, Dim):
            dim = Dim(dim)
        out[name] = dim
    return MappingProxyType(out)


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture; docs/plugins-and-suites.md ("Writing a plugin") walks
    through one.

    ``outputs`` lists one shape per tensor the model returns; nested tuples (an
    LSTM's ``(out, (h, c))``) are flattened depth-first. ``loss`` maps those output
    tensors to a scalar for the training step; the default is the mean of outputs.
    ``suites`` adds the model to existing suites besides those whose files name it.
    """

    name: str
    constructor: Callable[..., nn.Module]
    inputs: Sequence[Input]
    outputs: Sequence[Shape | str | Sequence[str | int]]
    description: str = ""
    family: str = ""
    tags: Sequence[str] = ()
    source: str = ""
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    dims: Mapping[str, int | Dim] = field(default_factory=dict)
    constraints: Sequence[Constraint | str] = ()
    batch_sizes: Sequence[int] = (1, 8)
    trainable: bool = True
    loss: Callable[[Sequence[torch.Tensor]], torch.Tensor] | None = None
    suites: Sequence[str] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            raise SpecError(
                f"model name {self.name!r} must be lowercase letters, digits and "
                "underscores, starting with a letter"
            )
        try:
            self._normalise()
        except HarnessError as exc:
            raise type(exc)(f"model {self.name!r}: {exc}") from None

    def _normalise(self) -> None:
        setattr_ = object.__setattr__
        if not callable(self.constructor):
            raise SpecError(f"constructor must be callable, got {self.constructor!r}")
        setattr_(self, "inputs", tuple(self.inputs))
        if not self.inputs or not all(isinstance(i, Input) for i in self.inputs):
            raise SpecError("inputs must be a non-empty sequence of harness.Input")
        setattr_(self, "outputs", tuple(Shape.parse(s) for s in self.outputs))
        if not self.outputs:
            raise SpecError("outputs must declare at least one shape")
        setattr_(self, "dims", _normalise_dims(self.dims))
        setattr_(
            self,
            "constraints",
            tuple(
                c if isinstance(c, Constraint) else Constraint.parse(c) for c in self.constraints
            ),
        )
        setattr_(self, "kwargs", MappingProxyType(dict(self.kwargs)))
        setattr_(self, "tags", tuple(self.tags))
        setattr_(self, "suites", tuple(self.suites))
        setattr_(self, "batch_sizes", tuple(self.batch_sizes))
        if not self.batch_sizes or not all(type(b) is int and b > 0 for b in self.batch_sizes):
            raise SpecError(f"batch_sizes must be positive integers, got {self.batch_sizes!r}")
        if BATCH in self.dims:
            raise SpecError(f"'{BATCH}' is the batch size and cannot be declared as a dimension")
        for dim_name, dim in self.dims.items():
            if type(dim.default) is not int or dim.default <= 0:
                raise SpecError(
                    f"dimension {dim_name} needs a positive integer default, got {dim.default!r}"
                )
            if dim.kwarg is not None and dim.kwarg in self.kwargs:
                raise SpecError(
                    f"keyword {dim.kwarg!r} is set both in kwargs and by dimension {dim_name}"
                )
        known = set(self.dims) | {BATCH}
        for where, names in self._symbolic_parts():
            unknown = sorted(names - known)
            if unknown:
                raise ShapeError(
                    f"{where} uses undeclared dimension(s) {', '.join(unknown)}; "
                    f"declare them in dims (declared: {', '.join(sorted(known))})"
                )

    def _symbolic_parts(self) -> Iterable[tuple[str, frozenset[str]]]:
        for inp in self.inputs:
            yield f"input {inp.name} {inp.shape}", inp.names
        for i, shape in enumerate(self.outputs):
            yield f"output {i} {shape}", shape.names
        for constraint in self.constraints:
            yield f"constraint {constraint.source!r}", constraint.names

    @property
    def default_dims(self) -> dict[str, int]:
        return {name: dim.default for name, dim in self.dims.items()}

    @property
    def default_kwargs(self) -> dict[str, Any]:
        """The constructor's keyword arguments at the default configuration."""
        return self.constructor_kwargs(self.default_dims)

    def constructor_kwargs(self, dims: Mapping[str, int]) -> dict[str, Any]:
        kwargs = dict(self.kwargs)
        kwargs.update({d.kwarg: dims[n] for n, d in self.dims.items() if d.kwarg is not None})
        return kwargs

    def resolve_dims(self, overrides: Mapping[str, int] | None = None) -> dict[str, int]:
        """Defaults updated with ``overrides``, checked against the constraints."""
        dims = self.default_dims
        for name, value in (overrides or {}).items():
            if name not in self.dims:
                declared = ", ".join(self.dims) or "none"
                raise ShapeError(
                    f"model {self.name!r} has no dimension {name!r} (its dimensions: {declared})"
                )
            if type(value) is not int or value <= 0:
                raise ShapeError(
                    f"dimension {name} of model {self.name!r} must be a positive "
                    f"integer, got {value!r}"
                )
            dims[name] = value
        for constraint in self.constraints:
            try:
                holds = constraint.holds(dims)
            except ShapeError as exc:  # the plugin's expression, not the user's values
                raise ShapeError(
                    f"model {self.name!r}: {exc}; fix the model's constraints "
                    "(or skip its plugin with --disable-plugin)"
                ) from None
            if not holds:
                values = ", ".join(f"{n}={dims[n]}" for n in sorted(constraint.names))
                raise ShapeError(
                    f"model {self.name!r}: {values} breaks its constraint "
                    f"'{constraint}'; choose values that satisfy it"
                )
        return dims

    def build(self, dims: Mapping[str, int] | None = None) -> nn.Module:
        return self.constructor(**self.constructor_kwargs(self.resolve_dims(dims)))

    def example_inputs(
        self,
        batch_size: int,
        dims: Mapping[str, int] | None = None,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
    ) -> tuple[torch.Tensor, ...]:
        env = {**self.resolve_dims(dims), BATCH: batch_size}
        generator = torch.Generator().manual_seed(seed)
        return tuple(
            i.make(env, device=device, dtype=dtype, generator=generator) for i in self.inputs
        )

    def expected_shapes(
        self, batch_size: int, dims: Mapping[str, int] | None = None
    ) -> list[tuple[int, ...]]:
        env = {**self.resolve_dims(dims), BATCH: batch_size}
        return [shape.evaluate(env) for shape in self.outputs]

    def compute_loss(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return (self.loss or mean_of_outputs)(outputs)
