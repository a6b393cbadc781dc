"""The DataFrame view of case records: one row per case, built here and nowhere else.

``compare``, ``history``, ``report``, ``export`` and the machine-noise estimate read
runs as this frame (``results.load``); the console and the runner read the
:class:`~harness.store.record.CaseRecord` objects themselves. Columns:

* ``file``, ``run_id``: where the case was read from;
* every scalar field of ``CaseRecord`` under its own name (``model``, ``batch_size``,
  ``device``, ``dtype``, ``precision``, ``compile_mode``, ``backend``, ``mode``,
  ``repeat``, ``suite``, ``plugin``, ``status``, ``error``, ``traceback``,
  ``output_tail``, ``threads``, ``params``, ``throughput``, ``speedup_vs_eager``,
  ``isolation``), ``NaN``/``None`` where unknown;
* ``dims``, the whole mapping (a case's identity), and ``dims.NAME`` per dimension
  (nullable integers, missing for models without it) so that ``groupby`` works;
* each measured section flattened with dots: ``latency.median``, ``latency.q25``, ...
  (``latency.samples`` stays one list per row), ``heartbeat.before``,
  ``memory.cpu_peak_rss_bytes``, ``flops.per_step``, ``compile.first_call_s``,
  ``batch_search.max_batch_size``, ``interleaved.session``, ``node.id``, and
  ``environment.*`` for a case measured in an environment of its own;
* the run's environment as ``env.*`` (``env.hostname``, ``env.git.commit``,
  ``env.environment_variables`` whole) and its measurement settings as ``settings.*``;
* keys a later harness wrote that this one does not know, flattened the same way;
* from a results store (``harness.store.columnar``): ``kind``, the run's hardware kind.
  Its summary frame (``Store.load(summary=True)``, what ``history`` reads) has only the
  identity columns, ``status``, ``suite``, ``plugin``, ``latency.median``,
  ``latency.per``, ``latency.block_size``, ``throughput``, the ``env.time``,
  ``env.git.*`` and ``env.hostname`` of the run, ``dims`` and ``dims.*``, and
  ``latency.sample_count`` in place of the samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from harness.store.record import CaseRecord, RunHeader

# Mappings kept whole in a column: a variable left unset is then told from one unrecorded.
_WHOLE = frozenset({"dims", "environment_variables"})
_SECTIONS = (
    "latency",
    "heartbeat",
    "memory",
    "flops",
    "compile",
    "batch_search",
    "interleaved",
    "node",
    "environment",
)


def _flatten(prefix: str, value: Mapping[str, Any], out: dict[str, Any]) -> None:
    for key, item in value.items():
        if isinstance(item, Mapping) and key not in _WHOLE:
            _flatten(f"{prefix}{key}.", item, out)
        else:
            out[f"{prefix}{key}"] = item


def run_columns(header: RunHeader) -> dict[str, Any]:
    """The ``env.*`` and ``settings.*`` columns a run gives each of its cases."""
    columns: dict[str, Any] = {}
    _flatten("env.", header.environment, columns)
    _flatten("settings.", header.settings, columns)
    return columns


def row(record: CaseRecord) -> dict[str, Any]:
    """One case's columns, its run's aside."""
    out: dict[str, Any] = {}
    for name, value in vars(record).items():
        if name == "extra":
            _flatten("", {k: v for k, v in value.items() if k not in out}, out)
        elif name in _SECTIONS:
            if value is not None:
                _flatten(f"{name}.", value, out)
        else:
            out[name] = value
    out["dims"] = dict(record.dims)
    for name, size in record.dims.items():
        out[f"dims.{name}"] = size
    return out


def frame(cases: Iterable[tuple[str, Mapping[str, Any], CaseRecord]]) -> pd.DataFrame:
    """The frame of ``(file, run columns, record)`` triples, in their order."""
    rows = [{"file": file, **row(record), **run} for file, run, record in cases]
    result = pd.DataFrame(rows)
    for column in result.columns:
        if column.startswith("dims."):
            result[column] = result[column].astype("Int64")
    return result
