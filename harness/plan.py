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

from harness.axes import AUTO, COMPILE_MODES, DTYPES, MODES, PRECISIONS
from harness.devices import available_devices, check_devices
from harness.errors import HarnessError, UsageError
from harness.registry import Registry, did_you_mean, expand_dims
from harness.suites import Suite
from harness.timing import MeasureConfig

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
        parts = [f"B={AUTO if self.batch_size is None else self.batch_size}"]
        parts += [f"{k}={self.dims[k]}" for k in self.chosen]
        parts += [v for v, default in ((self.device, "cpu"), (self.dtype, "float32"),
                                       (self.mode, "infer")) if v != default]
        if self.compile_mode != "none":
            parts.append(f"compile={self.compile_mode}")
        return f"{self.model}[{','.join(parts)}]" + (f"#{self.repeat + 1}" if self.repeat else "")

    def key(self) -> tuple[Any, ...]:
        """What identifies a case across runs and within one: all but suite and threads.

        An eager case has no backend, whatever ``--backend`` said.
        """
        backend = self.backend if self.compile_mode != "none" else None
        return (self.model, self.batch_size, tuple(sorted(self.dims.items())), self.device,
                self.dtype, self.precision, self.compile_mode, backend, self.mode, self.repeat)

    def config_key(self) -> tuple[Any, ...]:
        """The case without batch size or repeat: they share OOMs and batch searches."""
        return self.key()[:1] + self.key()[2:-1]

    def eager_key(self) -> tuple[Any, ...]:
        """The key of the uncompiled twin of this case."""
        return dataclasses.replace(self, compile_mode="none").key()

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "dims": dict(self.dims), "chosen": list(self.chosen)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Case:
        return cls(**{**data, "chosen": tuple(data["chosen"])})


def case_key_of_record(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """The :meth:`Case.key` of a written record (auto-batch records keep ``None``)."""
    batch = None if record.get("batch_search") else record["batch_size"]
    return Case(record["model"], batch, record["dims"], device=record["device"],
                dtype=record["dtype"], precision=record.get("precision", "cast"),
                compile_mode=record["compile_mode"], backend=record.get("backend") or "inductor",
                mode=record["mode"], repeat=record.get("repeat", 0)).key()


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
        return cls(**{k: tup(v) for k, v in data.items() if k != "dims"},
                     dims={k: tuple(v) for k, v in data.get("dims", {}).items()})


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


def ordered_group(case: Case) -> tuple[Any, ...]:
    """The case without batch size, compile mode and repeat: cases that must run one after
    another, since out-of-memory skipping, speedups over eager and batch searches link them."""
    return (case.model, tuple(sorted(case.dims.items())), case.device, case.dtype,
            case.precision, case.mode)


def _shard_group(case: Case) -> tuple[Any, ...]:
    """The case without batch size and compile mode: what a shard keeps together."""
    return (*ordered_group(case), case.repeat)


def select_models(registry: Registry, suite: Suite | None, models: Sequence[str]) -> list[str]:
    """The suite's models (optionally narrowed to ``models``), or ``models`` alone."""
    if suite is None:
        if not models:
            raise UsageError("nothing to run: give --suite NAME or --model NAME "
                             f"(suites: {', '.join(sorted(registry.suites))})")
        return [registry.model(m).spec.name for m in dict.fromkeys(models)]
    in_suite = registry.suite_models(suite)
    if not in_suite:
        raise UsageError(f"suite {suite.name!r} has no models loaded: the plugins that "
                         "provide them are disabled (--disable-plugin, HARNESS_DISABLE_PLUGINS)"
                         " or not installed")
    for name in models:
        registry.model(name)
        if name not in in_suite:
            raise UsageError(f"model {name!r} is not in suite {suite.name!r}"
                             f"{did_you_mean(name, in_suite)}")
    return [m for m in in_suite if m in models] if models else in_suite


def _choice(values: Sequence[str], allowed: Sequence[str], what: str) -> tuple[str, ...]:
    for value in values:
        if value not in allowed:
            raise UsageError(f"unknown {what} {value!r}{did_you_mean(value, allowed)} "
                             f"(choose from {', '.join(allowed)})")
    return tuple(dict.fromkeys(values))


def build_plan(registry: Registry, request: Request) -> Plan:
    """Cases for ``request``; its values override the suite's, which override specs'."""
    suite = registry.suite(request.suite) if request.suite else None
    sweep: Mapping[str, Any] = suite.sweep if suite else {}
    names = select_models(registry, suite, request.models)
    for dim in request.dims:
        if not any(dim in registry.model(n).spec.dims for n in names):
            raise UsageError(f"no selected model has a dimension {dim!r}; "
                             "'harness list' shows each model's dimensions")
    devices = check_devices(list(request.devices or sweep.get("devices")
                                 or available_devices()))
    dtypes = _choice(request.dtypes or sweep.get("dtypes") or ("float32",), DTYPES, "dtype")
    precision = _choice([request.precision or sweep.get("precision") or "cast"], PRECISIONS,
                        "precision")[0]
    compiles = _choice(request.compile_modes or sweep.get("compile") or ("none",),
                       COMPILE_MODES, "compile mode")
    compiles = tuple(sorted(compiles, key=COMPILE_MODES.index))  # eager first
    backend = request.backend or sweep.get("backend") or "inductor"
    modes = _choice(request.modes or sweep.get("modes") or ("infer",), MODES, "mode")

    cases = []
    for name in names:
        spec = registry.model(name).spec
        override = suite.overrides.get(name) if suite else None
        model_dims = {**(override.dims if override else {}),
                      **{k: v for k, v in request.dims.items() if k in spec.dims}}
        sizes = (request.batch_sizes or (override and override.batch_sizes)
                 or sweep.get("batch_sizes") or spec.batch_sizes)
        sizes = (None,) if sizes == AUTO else tuple(sorted(set(sizes)))
        for combo in expand_dims(model_dims):
            try:
                resolved = spec.resolve_dims(combo)
            except HarnessError as exc:
                raise UsageError(str(exc)) from None
            for device, dtype, mode, compile_mode, batch in itertools.product(
                    devices, dtypes, modes, compiles, sizes):
                if mode == "train" and not spec.trainable:
                    continue
                cases.append(Case(name, batch, resolved, tuple(combo),
                                  suite.name if suite else None, device, dtype, precision,
                                  compile_mode, backend, mode, request.threads))
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
