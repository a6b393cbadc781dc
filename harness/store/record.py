"""The two kinds of line a results file holds, typed: a :class:`RunHeader`, then one
:class:`CaseRecord` per case.

A case record is made once, by whoever measured (or failed to measure) the case:
``CaseRecord.of_case`` and the worker's measurement, an executor's failure, an
interleaved pair, an asv import. Later stages extend it with :func:`dataclasses.replace`
through named fields (the runner's ``batch_search`` and ``speedup_vs_eager``, a cluster's
``node`` and ``environment``); :meth:`CaseRecord.to_json` is the only serialisation
(``results.ResultsWriter`` writes it, child processes send it) and
:meth:`CaseRecord.from_json` the only way back, after ``schema.check`` has vetted the line.

The measured sections (``latency``, ``memory``, ``flops``, ``compile``, ``heartbeat``,
``batch_search``, ``interleaved``, ``environment``) stay JSON objects: their keys are
documented in ``docs/measuring.md`` and grow between versions without a schema bump.
Keys of a line that this version does not know are kept in ``extra`` and written back
(a merge or an import loses nothing a later harness wrote).

Schema versions:

* **2**: every field of :class:`CaseRecord` is written, ``null`` where unknown or not
  measured, so a line is self-describing; ``precision``, ``backend`` and ``repeat`` are
  required (a case's identity is whole in every record).
* **1**: fields without a value were left out; files from before 0.2 may lack
  ``precision``, ``backend``, ``repeat`` and ``latency.per``. Read through
  :func:`_upgrade_v1`, which fills them as version-1 readers assumed: ``cast``,
  ``inductor`` for a compiled case (``null`` for an eager one), repeat 0, and ``per``
  from the block size.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.sweep.identity import CaseKey

if TYPE_CHECKING:
    from harness.sweep.plan import Case

SCHEMA_VERSION = 2

Section = Mapping[str, Any]  # a measured section: a JSON object


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class CaseRecord:
    """One case's outcome: its identity, its status and what was measured.

    ``None`` means unknown or not measured, never zero. ``batch_size`` is ``None`` only
    for a case whose batch size was searched (``auto``) and none fitted.
    """

    model: str
    batch_size: int | None
    dims: Mapping[str, int]
    device: str = "cpu"
    dtype: str = "float32"
    precision: str = "cast"
    compile_mode: str = "none"
    backend: str | None = None  # None when eager, whatever --backend said
    mode: str = "infer"
    repeat: int = 0  # which of the run's fresh processes of this case
    suite: str | None = None
    plugin: str | None = None  # the plugin that registered the model
    status: str = "ok"  # ok, error, oom, shape_mismatch, crashed, timeout, skipped
    error: str | None = None  # one line, when not ok
    traceback: str | None = None  # innermost frames, at most ~4 KB, when not ok
    output_tail: str | None = None  # the last 4 KiB the case's process wrote, when not ok
    threads: int | None = None  # intra-op threads the case ran with
    params: int | None = None
    latency: Section | None = None  # seconds: per-call median/mean, spread, samples
    throughput: float | None = None  # samples (batch elements) per second
    heartbeat: Section | None = None  # reference workload before and after, seconds
    memory: Section | None = None  # *_bytes
    flops: Section | None = None  # per_step, achieved_per_s, peak_per_s, utilisation
    compile: Section | None = None  # compiled cases: first_call_s, compile_s, recompiles
    speedup_vs_eager: float | None = None  # eager median / this median, same sweep
    batch_search: Section | None = None  # max_batch_size, limit, probes (``auto``)
    isolation: str | None = None  # process, none, or interleaved
    node: Section | None = None  # the cluster node that measured the case
    environment: Section | None = None  # the case's own, where not its run's
    interleaved: Section | None = None  # ab: session, pair, side, source, turns
    run_id: str | None = None  # set by the writer
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys this version lacks

    def __repr__(self) -> str:
        median = (self.latency or {}).get("median")
        told = f"median={median:.4g} s" if self.ok and median else f"error={self.error!r}"
        return f"CaseRecord({self.label}, {self.status}, {told})"

    @classmethod
    def of_case(cls, case: Case, **measured: Any) -> CaseRecord:
        """The record of ``case`` as planned; ``measured`` sets any other field."""
        return cls(
            model=case.model,
            batch_size=case.batch_size,
            dims=dict(case.dims),
            device=case.device,
            dtype=case.dtype,
            precision=case.precision,
            compile_mode=case.compile_mode,
            backend=case.backend if case.compile_mode != "none" else None,
            mode=case.mode,
            repeat=case.repeat,
            suite=case.suite,
            **measured,
        )

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def median(self) -> float | None:
        """The per-call median latency in seconds; ``None`` when not measured."""
        return (self.latency or {}).get("median")

    def key(self, measured: bool = False) -> CaseKey:
        """The case's key: as planned (a searched batch size is ``None``), or with
        ``measured`` at the batch size it was measured at."""
        return CaseKey.of_record(vars(self), measured)

    def run_key(self) -> tuple[CaseKey, int]:
        """What identifies the case within its run, as ``Case.run_key`` does."""
        return self.key(), self.repeat

    @property
    def label(self) -> str:
        """The case's label (``CaseKey.label``) at the batch size measured, with the
        repeat (``#2``) as ``Case.label`` gives it."""
        return self.key(measured=self.batch_size is not None).repeat_label(self.repeat)

    def to_json(self) -> dict[str, Any]:
        """The line's object: every field (``None`` as ``null``), then the extra keys."""
        fields = {f.name: getattr(self, f.name) for f in _FIELDS if f.name != "extra"}
        return {
            "record": "case",
            "schema": SCHEMA_VERSION,
            "run_id": self.run_id,
            **fields,
            "dims": dict(self.dims),
            **{k: v for k, v in self.extra.items() if k not in fields},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CaseRecord:
        """The record a checked line (``schema.check``) holds, upgraded to this version."""
        if data.get("schema", SCHEMA_VERSION) < 2:
            data = _upgrade_v1(data)
        known = {k: data[k] for k in _NAMES if k in data}
        extra = {k: v for k, v in data.items() if k not in _NAMES and k not in _LINE_KEYS}
        return cls(**known, extra=extra)


_FIELDS = dataclasses.fields(CaseRecord)
_NAMES = frozenset(f.name for f in _FIELDS) - {"extra"}
_LINE_KEYS = frozenset({"record", "schema"})


@dataclass(frozen=True)
class RunHeader:
    """What a run was: the command, the request (for ``--resume``), where it ran and how
    it measured. ``environment`` and ``settings`` are JSON objects (``environment.collect``
    and the measurement settings)."""

    run_id: str = field(default_factory=new_run_id)  # --resume gives the run's own
    command: tuple[str, ...] | None = None
    request: Section | None = None  # plan.Request.to_dict(); None for imports
    environment: Section = field(default_factory=dict)
    settings: Section = field(default_factory=dict)
    plugins: tuple[str, ...] = ()  # --plugin modules loaded
    disabled_plugins: tuple[str, ...] = ()
    executor: Section | None = None  # where a cluster run's cases ran
    side: Section | None = None  # ab: which side of a session this file is
    resumed: bool = False  # this header continues an earlier one of the same run
    merged_from: tuple[Section, ...] | None = None  # harness merge: the shards joined
    missing_shards: tuple[int, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        command = " ".join(self.command) if self.command else "?"
        return f"RunHeader({self.run_id}, {command!r}, {self.environment.get('time')})"

    @property
    def commit(self) -> str | None:
        return (self.environment.get("git") or {}).get("commit")

    def to_json(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in _RUN_FIELDS if f.name != "extra"}
        for name in ("command", "plugins", "disabled_plugins", "merged_from", "missing_shards"):
            fields[name] = None if fields[name] is None else list(fields[name])
        return {
            "record": "run",
            "schema": SCHEMA_VERSION,
            "run_id": self.run_id,
            **fields,
            **{k: v for k, v in self.extra.items() if k not in fields},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunHeader:
        """The header a checked line holds (``schema.check``)."""
        known: dict[str, Any] = {k: data[k] for k in _RUN_NAMES if data.get(k) is not None}
        for name in ("command", "plugins", "disabled_plugins", "merged_from", "missing_shards"):
            if isinstance(known.get(name), list):
                known[name] = tuple(known[name])
        extra = {k: v for k, v in data.items() if k not in _RUN_NAMES and k not in _LINE_KEYS}
        return cls(**known, extra=extra)


_RUN_FIELDS = dataclasses.fields(RunHeader)
_RUN_NAMES = frozenset(f.name for f in _RUN_FIELDS) - {"extra"}


def _upgrade_v1(data: Mapping[str, Any]) -> dict[str, Any]:
    """A version-1 case line as version 2, with the defaults version-1 readers assumed."""
    compiled = data.get("compile_mode") != "none"
    upgraded = {
        **data,
        "precision": data.get("precision") or "cast",
        "backend": (data.get("backend") or "inductor") if compiled else None,
        "repeat": data.get("repeat") or 0,
    }
    latency = data.get("latency")
    if isinstance(latency, Mapping) and "per" not in latency and "block_size" in latency:
        size = latency["block_size"]
        upgraded["latency"] = {**latency, "per": "call" if size == 1 else "block"}
    return upgraded
