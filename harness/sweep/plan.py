"""From a request (suite, models, sweep axes) to the ordered list of cases.

Everything that can be wrong with the request (an unknown model, an absent device,
a dimension no selected model has, a value that breaks a constraint) is found here,
before the first case runs, so a typo never costs a half-finished sweep.

Cases are ordered model, dimensions, device, dtype, mode, compile mode, batch size:
an eager case runs before its compiled twins (so the speedup is known when they
finish), and batch sizes ascend (so an out-of-memory skips the larger ones).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.axes import (
    AUTO,
    BACKEND,
    COMPILE,
    COMPILE_MODES,
    DEVICE,
    DTYPE,
    MODE,
    PRECISION,
    THREADS,
    Axis,
    expand_dims,
)
from harness.errors import HarnessError, UsageError, did_you_mean
from harness.measure.devices import available_devices, check_devices
from harness.measure.timing import MeasureConfig
from harness.models.registry import Registry
from harness.models.suites import Suite
from harness.sweep.identity import CaseKey

MEASURE_KEYS = {f.name for f in dataclasses.fields(MeasureConfig)}
DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True)
class Case:
    """One measurement: a model at one batch size, set of dimensions and sweep point.

    ``dims`` holds every dimension's value, defaults included, so a record stays
    unambiguous if a default changes later; ``chosen`` names those set explicitly.
    ``batch_size`` is ``None`` for a case whose batch size is searched (``auto``).
    """

    model: str
    batch_size: int | None
    dims: Mapping[str, int] = field(default_factory=dict)
    chosen: tuple[str, ...] = ()
    suite: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    precision: str = "cast"
    compile_mode: str = "none"
    backend: str = "inductor"
    mode: str = "infer"
    threads: int | None = None
    repeat: int = 0  # which of the run's repeats (fresh processes) of this case

    @property
    def label(self) -> str:
        """The key's label, with the repeat (``#2``) when a run made several."""
        return self.key().repeat_label(self.repeat)

    def key(self) -> CaseKey:
        """What identifies the case across runs: all but suite, threads and repeat."""
        return CaseKey.make(
            self.model,
            self.batch_size,
            self.dims,
            device=self.device,
            dtype=self.dtype,
            precision=self.precision,
            compile_mode=self.compile_mode,
            backend=self.backend,
            mode=self.mode,
        )

    def run_key(self) -> tuple[CaseKey, int]:
        """What identifies the case within a run: its key and which repeat it is."""
        return self.key(), self.repeat

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "dims": dict(self.dims), "chosen": list(self.chosen)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Case:
        return cls(**{**data, "chosen": tuple(data["chosen"])})


@dataclass(frozen=True)
class Request:
    """What the user asked for; stored in the run header so ``--resume`` can redo it."""

    suite: str | None = None
    models: tuple[str, ...] = ()
    batch_sizes: tuple[int, ...] | str | None = None
    dims: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    devices: tuple[str, ...] | None = None
    dtypes: tuple[str, ...] | None = None
    precision: str | None = None
    compile_modes: tuple[str, ...] | None = None
    backend: str | None = None
    modes: tuple[str, ...] | None = None
    threads: int | None = None
    timeout: float | None = None
    repeats: int | None = None
    shard: tuple[int, int] | None = None  # (index, count), 1-based
    measure: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Request:
        def tup(value: Any) -> Any:
            return tuple(value) if isinstance(value, list) else value

        return cls(
            **{k: tup(v) for k, v in data.items() if k != "dims"},
            dims={k: tuple(v) for k, v in data.get("dims", {}).items()},
        )


@dataclass(frozen=True)
class Plan:
    cases: tuple[Case, ...]
    measure: MeasureConfig
    label: str
    request: Request
    timeout: float = DEFAULT_TIMEOUT


def shard_cases(cases: Sequence[Case], index: int, count: int) -> list[Case]:
    """Shard ``index`` of ``count``: a deterministic, balanced slice of ``cases``.

    A configuration's batch sizes and compile modes stay together, so out-of-memory
    skipping and speedups over eager work within a shard; groups go largest first to
    the shard with the fewest cases so far (ties: lowest shard), in plan order.
    """
    if not 1 <= index <= count:
        raise UsageError(f"shard {index}/{count} does not exist; use I/N with 1 <= I <= N")
    groups: dict[tuple[Any, ...], list[Case]] = {}
    for case in cases:
        groups.setdefault(_shard_group(case), []).append(case)
    loads = [0] * count
    mine: set[tuple[Any, ...]] = set()
    for key, group in sorted(groups.items(), key=lambda item: -len(item[1])):
        target = loads.index(min(loads))
        loads[target] += len(group)
        if target == index - 1:
            mine.add(key)
    return [c for c in cases if _shard_group(c) in mine]


def _shard_group(case: Case) -> tuple[CaseKey, int]:
    """What a shard keeps together: the cases that run in sequence, of one repeat."""
    return case.key().sequence(), case.repeat


def select_models(registry: Registry, suite: Suite | None, models: Sequence[str]) -> list[str]:
    """The suite's models (optionally narrowed to ``models``), or ``models`` alone."""
    if suite is None:
        if not models:
            raise UsageError(
                "nothing to run: give --suite NAME or --model NAME "
                f"(suites: {', '.join(sorted(registry.suites))})"
            )
        return [registry.model(m).spec.name for m in dict.fromkeys(models)]
    in_suite = registry.suite_models(suite)
    if not in_suite:
        raise UsageError(
            f"suite {suite.name!r} has no models loaded: "
            + (
                suite.requires
                or "the plugins that provide them are disabled (--disable-plugin, "
                "HARNESS_DISABLE_PLUGINS) or not installed"
            )
        )
    for name in models:
        registry.model(name)
        if name not in in_suite:
            raise UsageError(
                f"model {name!r} is not in suite {suite.name!r}{did_you_mean(name, in_suite)}"
            )
    return [m for m in in_suite if m in models] if models else in_suite


def _choice(values: Sequence[str], allowed: Sequence[str], what: str) -> tuple[str, ...]:
    for value in values:
        if value not in allowed:
            raise UsageError(
                f"unknown {what} {value!r}{did_you_mean(value, allowed)} "
                f"(choose from {', '.join(allowed)})"
            )
    return tuple(dict.fromkeys(values))


def _asked(axis: Axis, request: Request, sweep: Mapping[str, Any]) -> Any:
    """The request's value of ``axis``, else the suite's; ``None`` if neither sets it."""
    return getattr(request, axis.request_field) or (
        sweep.get(axis.suite_key) if axis.suite_key else None
    )


def _setting(axis: Axis, request: Request, sweep: Mapping[str, Any]) -> Any:
    """The value of ``axis`` asked for, else its default (a tuple of values if it sweeps),
    checked against the values the axis accepts."""
    value = _asked(axis, request, sweep) or ((axis.default,) if axis.sweeps else axis.default)
    if axis.values is None:
        return value
    checked = _choice(value if axis.sweeps else [value], axis.values, axis.name)
    return checked if axis.sweeps else checked[0]


def build_plan(registry: Registry, request: Request) -> Plan:
    """Cases for ``request``; its values override the suite's, which override specs'."""
    suite = registry.suite(request.suite) if request.suite else None
    sweep: Mapping[str, Any] = suite.sweep if suite else {}
    names = select_models(registry, suite, request.models)
    for dim in request.dims:
        if not any(dim in registry.model(n).spec.dims for n in names):
            raise UsageError(
                f"no selected model has a dimension {dim!r}; "
                "'harness list' shows each model's dimensions"
            )
    # Each axis: the request's values, else the suite's, else its default; devices default
    # to those present, batch sizes (per model, below) to a model's own.
    devices = check_devices(list(_asked(DEVICE, request, sweep) or available_devices()))
    dtypes, precision, compiles, backend, modes, threads = (
        _setting(axis, request, sweep)
        for axis in (DTYPE, PRECISION, COMPILE, BACKEND, MODE, THREADS)
    )
    compiles = tuple(sorted(compiles, key=COMPILE_MODES.index))  # eager first

    cases = []
    for name in names:
        spec = registry.model(name).spec
        override = suite.overrides.get(name) if suite else None
        model_dims = {
            **(override.dims if override else {}),
            **{k: v for k, v in request.dims.items() if k in spec.dims},
        }
        sizes = (
            request.batch_sizes
            or (override and override.batch_sizes)
            or sweep.get("batch_sizes")
            or spec.batch_sizes
        )
        sizes = (None,) if sizes == AUTO else tuple(sorted(set(sizes)))
        for combo in expand_dims(model_dims):
            try:
                resolved = spec.resolve_dims(combo)
            except HarnessError as exc:
                raise UsageError(str(exc)) from None
            for device, dtype, mode, compile_mode, batch in itertools.product(
                devices, dtypes, modes, compiles, sizes
            ):
                if mode == "train" and not spec.trainable:
                    continue
                cases.append(
                    Case(
                        model=name,
                        batch_size=batch,
                        dims=resolved,
                        chosen=tuple(combo),
                        suite=suite.name if suite else None,
                        device=device,
                        dtype=dtype,
                        precision=precision,
                        compile_mode=compile_mode,
                        backend=backend,
                        mode=mode,
                        threads=threads,
                    )
                )
    repeats = request.repeats or sweep.get("repeats") or 1
    # Repeats go round-robin over the sweep, so each case's processes are spread in time.
    cases = [dataclasses.replace(c, repeat=r) for r in range(repeats) for c in cases]
    if request.shard:
        cases = shard_cases(cases, *request.shard)
    settings = {k: v for k, v in sweep.items() if k in MEASURE_KEYS}
    settings.update({k: v for k, v in request.measure.items() if v is not None})
    try:
        config = MeasureConfig(**settings)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    label = suite.name if suite else "-".join(names[:3]) + ("-etc" if len(names) > 3 else "")
    timeout = request.timeout or sweep.get("timeout") or DEFAULT_TIMEOUT
    return Plan(tuple(cases), config, label, request, timeout)
