"""What a line of a results file must hold to be read: the one schema, checked on load.

Every reader of results files (``results.load``, ``list_runs``, ``last_run`` and through
them ``results``, ``compare``, ``history``, ``report``, ``export`` and ``--resume``) takes
its records from ``results.iter_records``, which hands each parsed line to :func:`check`
and skips one that fails with the file, the line and the reason given here. It is a
module of its own because it is the file format's contract, the page to read when a
field is added; ``record.py`` holds the typed records a checked line becomes (and the
schema versions), ``results.py`` is about files: writing, finding, reading, merging.

It checks what readers rely on, not all a writer writes: a case's identity has its
types, a run's header what ``results`` and ``history`` show of its environment, and
every measured number is finite, non-negative and in range. Unknown keys and unknown
record kinds pass, so later versions add them without a schema bump. The cost is a few
dict look-ups and type tests per record and a ``sum`` and a ``min`` over a list of
samples: the load path of large files stays fast, with no jsonschema.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

SIZE_LIMIT = 2**62  # batch sizes and dimensions beyond this are refused when planning
TIME_LIMIT = 1e9  # seconds (31 years): a longer time is damage, not a measurement
AMOUNT_LIMIT = 1e30  # bytes, FLOPs, rates, counts: far above any real one, far below inf

# the numbers of a latency that are counts or a level, not times
_LATENCY_COUNTS = frozenset({"n", "iterations", "blocks", "warmup_iters", "block_size", "ci_level"})
_LATENCY_TIMES = frozenset(
    {
        "median",
        "mean",
        "min",
        "max",
        "q25",
        "q75",
        "p90",
        "p99",
        "ci_low",
        "ci_high",
        "iqr",
        "first_call",
    }
)


class _Section(NamedTuple):
    """A measured section of a case: the limit of its numbers, and which of its keys
    readers compute with (those hold a number or null, never text)."""

    limit: float
    numeric: Callable[[str], bool]


_MEASURED = {
    "latency": _Section(TIME_LIMIT, (_LATENCY_TIMES | _LATENCY_COUNTS).__contains__),
    "heartbeat": _Section(TIME_LIMIT, {"before", "after"}.__contains__),
    "memory": _Section(AMOUNT_LIMIT, lambda key: key.endswith("_bytes")),
    "flops": _Section(
        AMOUNT_LIMIT, {"per_step", "achieved_per_s", "peak_per_s", "utilisation"}.__contains__
    ),
    "compile": _Section(AMOUNT_LIMIT, lambda key: key.endswith("_s") or key == "recompiles"),
}


class InvalidRecord(ValueError):
    """Why a record is not read: one short clause, shown after ``FILE:LINE: skipped:``."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _wrong(path: str, value: Any, expected: str) -> InvalidRecord:
    return InvalidRecord(f"{path} is {_shown(value)}, expected {expected}")


# a field's test and what it expects, for the message
Field = tuple[Callable[[Any], bool], str]

_TEXT: Field = (lambda v: type(v) is str and v != "", "a non-empty string")
_TEXT_OR_NULL: Field = (lambda v: v is None or type(v) is str, "a string or null")
_SIZE: Field = (lambda v: type(v) is int and 1 <= v <= SIZE_LIMIT, "an integer from 1 to 2**62")
_COUNT_OR_NULL: Field = (
    lambda v: v is None or type(v) is int and 0 <= v <= SIZE_LIMIT,
    "a non-negative integer or null",
)
_AMOUNT_OR_NULL: Field = (
    lambda v: v is None or type(v) in (int, float) and 0 <= v <= AMOUNT_LIMIT,
    "a finite non-negative number or null",
)
_COUNTS_OR_NULL: Field = (
    lambda v: (
        v is None or type(v) is list and all(type(t) is int and 0 <= t <= SIZE_LIMIT for t in v)
    ),
    "a list of non-negative integers or null",
)
_MAPPING: Field = (lambda v: isinstance(v, dict), "an object")
_MAPPING_OR_NULL: Field = (lambda v: v is None or isinstance(v, dict), "an object or null")
_TEXTS_OR_NULL: Field = (
    lambda v: v is None or type(v) is list and all(type(t) is str for t in v),
    "a list of strings or null",
)
_BOOL_OR_NULL: Field = (lambda v: v is None or type(v) is bool, "true, false or null")
_OBJECTS_OR_NULL: Field = (
    lambda v: v is None or type(v) is list and all(isinstance(g, dict) for g in v),
    "a list of objects or null",
)

# field: (test, required); an optional field may be absent, never of another type
_CASE: dict[str, tuple[Field, bool]] = {
    "run_id": (_TEXT, True),
    "model": (_TEXT, True),
    "device": (_TEXT, True),
    "dtype": (_TEXT, True),
    "compile_mode": (_TEXT, True),
    "mode": (_TEXT, True),
    "status": (_TEXT, True),
    "precision": (_TEXT, False),  # these three required from version 2 (_IDENTITY_V2)
    "backend": (_TEXT_OR_NULL, False),
    "suite": (_TEXT_OR_NULL, False),
    "plugin": (_TEXT_OR_NULL, False),
    "error": (_TEXT_OR_NULL, False),
    "traceback": (_TEXT_OR_NULL, False),
    "output_tail": (_TEXT_OR_NULL, False),
    "isolation": (_TEXT_OR_NULL, False),
    "repeat": (_COUNT_OR_NULL, False),
    "threads": (_COUNT_OR_NULL, False),
    "params": (_COUNT_OR_NULL, False),
    "throughput": (_AMOUNT_OR_NULL, False),
    "speedup_vs_eager": (_AMOUNT_OR_NULL, False),
    "batch_search": (_MAPPING_OR_NULL, False),
    "node": (_MAPPING_OR_NULL, False),
    "interleaved": (_MAPPING_OR_NULL, False),
    "environment": (_MAPPING_OR_NULL, False),
    **{section: (_MAPPING_OR_NULL, False) for section in _MEASURED},
}
_RUN: dict[str, tuple[Field, bool]] = {
    "run_id": (_TEXT, True),
    "command": (_TEXTS_OR_NULL, False),
    "environment": (_MAPPING_OR_NULL, False),
    "settings": (_MAPPING_OR_NULL, False),
    "request": (_MAPPING_OR_NULL, False),
    "plugins": (_TEXTS_OR_NULL, False),
    "disabled_plugins": (_TEXTS_OR_NULL, False),
    "executor": (_MAPPING_OR_NULL, False),
    "side": (_MAPPING_OR_NULL, False),
    "resumed": (_BOOL_OR_NULL, False),
    "merged_from": (_OBJECTS_OR_NULL, False),
    "missing_shards": (_COUNTS_OR_NULL, False),
}
# what readers show or compute from an environment (a run's, or a case's own)
_ENVIRONMENT: dict[str, tuple[Field, bool]] = {
    **{
        key: (_TEXT_OR_NULL, False)
        for key in (
            "time",
            "hostname",
            "torch_version",
            "python_version",
            "harness_version",
            "cpu_model",
            "os",
            "machine",
        )
    },
    "threads": (_COUNT_OR_NULL, False),
    "cpu_count": (_COUNT_OR_NULL, False),
    "gpus": (_OBJECTS_OR_NULL, False),
    "git": (_MAPPING_OR_NULL, False),
}
_GIT: dict[str, tuple[Field, bool]] = {
    "commit": (_TEXT_OR_NULL, False),
    "dirty": (_BOOL_OR_NULL, False),
}
_INTERLEAVED: dict[str, tuple[Field, bool]] = {
    "session": (_TEXT_OR_NULL, False),
    "pair": (_COUNT_OR_NULL, False),
    "turns": (_COUNTS_OR_NULL, False),
}


def _fields(
    record: Mapping[str, Any], fields: Mapping[str, tuple[Field, bool]], prefix: str = ""
) -> None:
    for name, ((test, expected), required) in fields.items():
        if name not in record:
            if required:
                raise InvalidRecord(f"no {prefix}{name}")
        elif not test(record[name]):
            raise _wrong(prefix + name, record[name], expected)


def _numbers(values: list[Any], limit: float) -> bool:
    """Whether ``values`` are all finite numbers from 0 to ``limit``, in C loops only, as
    a case has thousands of samples: ``sum`` refuses text, null and lists, and is nan or
    inf if a value is; when none is negative, each is at most their sum."""
    try:
        total = sum(values)
        return (
            math.isfinite(total)
            and (not values or min(values) >= 0)
            and (total <= limit or max(values) <= limit)
        )
    except (TypeError, OverflowError):
        return False


def _section(values: Mapping[str, Any], name: str, section: _Section) -> None:
    for key, value in values.items():
        if section.numeric(key) and value is not None and type(value) not in (int, float):
            raise _wrong(f"{name}.{key}", value, "a number or null")
        _measured(
            value,
            f"{name}.{key}",
            AMOUNT_LIMIT if name == "latency" and key in _LATENCY_COUNTS else section.limit,
        )
    if name == "latency" and "samples" in values and type(values["samples"]) is not list:
        raise _wrong("latency.samples", values["samples"], "a list of times")


def _measured(value: Any, path: str, limit: float) -> None:
    """Every number in a measured section is finite, >= 0 and at most ``limit``; text,
    booleans and null pass where readers do not compute (units, methods, unknowns)."""
    if type(value) in (int, float):
        if not 0 <= value <= limit:
            raise _wrong(path, value, f"a finite number from 0 to {limit:g}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _measured(item, f"{path}.{key}", limit)
    elif type(value) is list and not _numbers(value, limit):
        if all(type(v) is dict for v in value):
            for i, item in enumerate(value):
                _measured(item, f"{path}[{i}]", limit)
        elif path.startswith("latency") or not all(type(v) is str for v in value):
            bad = next((v for v in value if not _numbers([v], limit)), value)
            raise InvalidRecord(
                f"{path} holds {_shown(bad)}, expected finite numbers from 0 to {limit:g}"
            )


def _environment(environment: Mapping[str, Any], prefix: str) -> None:
    _fields(environment, _ENVIRONMENT, prefix)
    if environment.get("git"):
        _fields(environment["git"], _GIT, f"{prefix}git.")


# a case's identity, whole in every record from version 2 (``harness.store.record``)
_IDENTITY_V2: dict[str, tuple[Field, bool]] = {
    "precision": (_TEXT, True),
    "backend": (_TEXT_OR_NULL, True),
    "repeat": ((lambda v: type(v) is int and 0 <= v <= SIZE_LIMIT, "a non-negative integer"), True),
}


def _case(record: Mapping[str, Any]) -> None:
    _fields(record, _CASE)
    if record["schema"] >= 2:
        _fields(record, _IDENTITY_V2)
    batch = record.get("batch_size")
    if not (_SIZE[0](batch) or batch is None and record["status"] != "ok"):
        raise _wrong(
            "batch_size", batch, _SIZE[1] + ("" if batch is None else " (or null in a case not ok)")
        )
    dims = record.get("dims")
    if not isinstance(dims, dict) or not all(
        type(v) is int and 0 <= v <= SIZE_LIMIT for v in dims.values()
    ):
        raise _wrong("dims", dims, "an object of sizes from 0 to 2**62")
    for name, section in _MEASURED.items():
        if record.get(name) is not None:
            _section(record[name], name, section)
    if record["status"] == "ok":
        median = (record.get("latency") or {}).get("median")
        if type(median) not in (int, float) or not median > 0:
            raise _wrong("latency.median", median, "a time > 0 s in an ok case")
    if record.get("interleaved"):
        _fields(record["interleaved"], _INTERLEAVED, "interleaved.")
    if record.get("environment"):
        _environment(record["environment"], "environment.")


def check(record: Any) -> None:
    """Raise :class:`InvalidRecord` unless ``record`` (a parsed line) can be read: a
    ``run`` header or a ``case`` that every reader can use as it is."""
    if not isinstance(record, dict):
        raise InvalidRecord(f"a JSON {type(record).__name__}, not an object")
    kind, schema = record.get("record"), record.get("schema")
    if type(kind) is not str:
        raise _wrong("record", kind, "'run' or 'case'")
    if type(schema) is not int or schema < 0:
        raise _wrong("schema", schema, "a version number")
    try:
        if kind == "case":
            _case(record)
        elif kind == "run":
            _fields(record, _RUN)
            if record.get("environment"):
                _environment(record["environment"], "environment.")
    except RecursionError:  # a measured section nested as deep as JSON allows
        raise InvalidRecord("nested too deeply to check") from None
