"""A results store: many runs' records as Parquet files, partitioned by hardware kind and
month, read a column and a partition at a time.

The JSON Lines files a run writes stay the source of truth (append-only, flushed per
case, readable, resumable); a store holds the same records for questions over many
runs, and can be rebuilt from the files at any time (:meth:`Store.rebuild`). Layout::

    STORE/harness-store.json                     {"store": "harness", "layout": 1}
    STORE/schema-2/runs/kind=K/month=YYYY-MM/RUN.parquet     one row: the run header
    STORE/schema-2/cases/kind=K/month=YYYY-MM/RUN.parquet    one row a case, no samples
    STORE/schema-2/samples/kind=K/month=YYYY-MM/RUN.parquet  one row a case: its samples

The data sits under the record schema that wrote it (``schema-2``): a harness with a
newer schema finds nothing under its own folder and says to rebuild. Every file is one
run's, written to a temporary name and renamed into place (samples, cases, then the run
row, which is what makes the run visible), so an ingest interrupted or racing another
never leaves half a run to read, and ingesting a run again either finds the same digest
and stops or replaces it whole. ``cases`` has a typed column for each field a filter or
``history`` needs and the whole record as JSON (every field back as written); samples
are apart, sorted by model in small row groups, so summaries never read them and a
query for one model reads only that model's row groups (:attr:`Store.rows_read`).

Why Parquet through pyarrow: the columnar format every data tool reads (pandas, DuckDB,
polars, Spark), with partition pruning and row-group statistics, in-process, no server
to run; pyarrow is its reference implementation. ``duckdb.sql("SELECT ... FROM
'STORE/schema-2/cases/**/*.parquet'")`` queries a store as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import ResultsError, UsageError
from harness.store import frame, schema
from harness.store.filters import (
    NO_FILTERS,
    NUMERIC_OPTIONS,
    OPTION_COLUMNS,
    Filters,
    environment_kind,
    slug,
    utc,
)
from harness.store.record import SCHEMA_VERSION, CaseRecord, RunHeader
from harness.store.results import CorruptLineWarning, iter_records

try:
    import fcntl
except ImportError:  # Windows: renames alone keep each run whole
    fcntl = None  # type: ignore[assignment]

MARKER = "harness-store.json"
LAYOUT = 1
TABLES = ("runs", "cases", "samples")
WRITE_ORDER = ("samples", "cases", "runs")  # a run is visible once its runs row is there
ROW_GROUP = 128  # cases a row group: one model's rows skip most of a file's groups
COMPACT_AFTER = 8  # runs a month holds as files of their own before it is compacted
# (and a kind's earlier months are compacted once a later month's run comes)
COMPACTED = "compacted.parquet"
MAX_PARTITIONS_LISTED = 24  # a read names its runs' partitions one by one up to this many
_SAFE = re.compile(r"[A-Za-z0-9._-]{1,100}")
INSTALL_HINT = "the results store needs pyarrow: pip install 'harness[store]'"


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.dataset
        import pyarrow.parquet
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return pyarrow


def is_store(path: str | Path) -> bool:
    return (Path(path) / MARKER).is_file()


@dataclass(frozen=True)
class Ingested:
    """What an ingest did with one run."""

    run_id: str
    file: str
    kind: str
    cases: int
    action: str  # stored, replaced, unchanged

    def __repr__(self) -> str:
        return f"Ingested({self.run_id}, {self.kind}, {self.cases} cases, {self.action})"


class Store:
    """A store folder: ``Store.create(path)`` or ``Store.open(path)``."""

    def __init__(self, root: Path):
        self.root = root
        self.data = root / f"schema-{SCHEMA_VERSION}"
        self.rows_read: dict[str, int] = {}  # per table, by the last read

    @classmethod
    def open(cls, path: str | Path, create: bool = False) -> Store:
        root = Path(path)
        marker = root / MARKER
        if not marker.is_file():
            if not create:
                raise ResultsError(
                    f"{root} is not a results store (no {MARKER}); make one with "
                    f"'harness results ingest RUN... --store {root}'"
                )
            if root.exists() and any(root.iterdir()):
                raise ResultsError(
                    f"{root} is a folder with other files in it; give --store a new or empty folder"
                )
            root.mkdir(parents=True, exist_ok=True)
            _write_atomic(marker, json.dumps({"store": "harness", "layout": LAYOUT}).encode())
        try:
            meta = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            raise ResultsError(
                f"{marker} is damaged; rebuild the store from its JSON Lines files"
            ) from None
        if not isinstance(meta, dict) or meta.get("store") != "harness":
            raise ResultsError(f"{marker} is not a harness store's marker")
        if meta.get("layout") != LAYOUT:
            raise ResultsError(
                f"{root} has store layout {meta.get('layout')!r}, this harness reads {LAYOUT}; "
                f"rebuild it: harness results ingest FILES... --store {root} --rebuild"
            )
        return cls(root)

    # -- writing --------------------------------------------------------------------

    def ingest(self, path: str | Path, kind: str | None = None) -> list[Ingested]:
        """Store every run of a results file, each whole or not at all. A file with a
        damaged line is refused (:class:`ResultsError`) before anything is written."""
        path = Path(path)
        runs = _read_strictly(path)
        return [self._ingest_run(path, header, cases, kind) for header, cases in runs]

    def _ingest_run(
        self, path: Path, header: RunHeader, cases: Sequence[CaseRecord], kind: str | None
    ) -> Ingested:
        pa = _pyarrow()
        kind = slug(kind) if kind else environment_kind(header.environment)
        when = utc(header.environment.get("time"))
        month = when.strftime("%Y-%m") if when else "unknown"
        digest = _digest(header, cases)
        with self._lock():
            stored = self._stored_versions(header.run_id).sort_values("written")
            if len(stored) and stored["digest"].iloc[-1] == digest:  # as its latest version
                found = stored["kind"].iloc[-1]
                return Ingested(header.run_id, str(path), found, len(cases), "unchanged")
            tables = _tables(pa, str(path), header, cases, when, digest, time.time_ns())
            partition = Path(f"kind={kind}") / f"month={month}"
            for table in WRITE_ORDER:  # the run's row last: it makes the run visible
                target = self.data / table / partition / f"{_file_name(header.run_id)}.parquet"
                target.parent.mkdir(parents=True, exist_ok=True)
                _write_parquet(pa, tables[table], target)
            if len(list((self.data / "runs" / partition).glob("*.parquet"))) > COMPACT_AFTER:
                self._compact(partition)
            for older in (self.data / "runs" / f"kind={kind}").glob("month=*"):
                # a kind's earlier months are done: one file each
                if older.name < f"month={month}" and len(list(older.glob("*.parquet"))) > 1:
                    self._compact(older.relative_to(self.data / "runs"))
        # an older version stays where it was, hidden by this one's later ``written``
        action = "replaced" if len(stored) else "stored"
        return Ingested(header.run_id, str(path), kind, len(cases), action)

    def _stored_versions(self, run_id: str) -> pd.DataFrame:
        """The stored versions of a run: digest, written, kind (none in a new store)."""
        if not (self.data / "runs").is_dir():
            return pd.DataFrame(columns=["digest", "written", "kind"])
        pa = _pyarrow()
        found = self._read(
            "runs",
            columns=["digest", "written", "kind"],
            filter=pa.dataset.field("run_id") == run_id,
        )
        return found.to_pandas()

    def _compact(self, partition: Path) -> None:
        """A partition's files as one file a table, each run's latest version, sorted by
        model (so a model's row groups are few). Under the lock. A reader between the
        renames and the removals sees a run twice and keeps one (``_in_run_order``)."""
        pa = _pyarrow()
        files = {t: sorted((self.data / t / partition).glob("*.parquet")) for t in TABLES}
        try:
            merged = {t: pa.concat_tables([pa.parquet.read_table(f) for f in files[t]])
                      for t in TABLES}  # fmt: skip
        except (pa.ArrowException, OSError) as exc:
            raise ResultsError(
                f"{self.root}: cannot compact {partition} ({str(exc).splitlines()[0][:200]}); "
                "rebuild the store from its JSON Lines files"
            ) from None
        runs = merged["runs"].to_pandas()
        latest = runs.sort_values("written").drop_duplicates("run_id", keep="last")
        versions = pa.array(
            (latest["run_id"] + "\0" + latest["written"].astype(str)).tolist(), pa.string()
        )
        for table in WRITE_ORDER:
            data = merged[table]
            key = pa.compute.binary_join_element_wise(
                data["run_id"], pa.compute.cast(data["written"], pa.string()), "\0"
            )
            data = data.filter(pa.compute.is_in(key, value_set=versions))
            order = [("run_id", "ascending")] if table == "runs" else [
                ("model", "ascending"), ("run_id", "ascending"), ("seq", "ascending")]  # fmt: skip
            target = self.data / table / partition / COMPACTED
            _write_parquet(pa, data.sort_by(order), target)
        for table in TABLES:
            for merged_file in files[table]:
                if merged_file.name != COMPACTED:
                    merged_file.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One writer at a time per store (several CI jobs ingesting at once)."""
        if fcntl is None:
            yield
            return
        with open(self.root / ".lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def rebuild(
        self,
        paths: Iterable[str | Path],
        kind: str | None = None,
        each: Callable[[Path, list[Ingested]], None] | None = None,
    ) -> list[Ingested]:
        """The store made again from results files: every file is read (and a damaged one
        refused) before the old data is replaced, so a failed rebuild changes nothing.
        ``each`` hears of every file once it is in."""
        files = [Path(p) for p in paths]
        for path in files:
            _read_strictly(path)
        fresh = Store(Path(tempfile.mkdtemp(prefix=".rebuild-", dir=self.root)))
        try:
            done = []
            for path in files:
                items = fresh.ingest(path, kind)
                done += items
                if each:
                    each(path, items)
            with self._lock():
                old = self.root / f".old-{os.getpid()}"
                if self.data.exists():
                    self.data.rename(old)
                fresh.data.mkdir(exist_ok=True)  # no runs in the files: an empty store
                fresh.data.rename(self.data)
                shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(fresh.root, ignore_errors=True)
        return done

    # -- reading --------------------------------------------------------------------

    def _dataset(self, table: str) -> Any:
        pa = _pyarrow()
        folder = self.data / table
        if not folder.is_dir():
            older = sorted(p.name for p in self.root.glob("schema-*"))
            if older:
                raise ResultsError(
                    f"{self.root} holds {', '.join(older)} data, this harness reads "
                    f"schema-{SCHEMA_VERSION}; rebuild it: harness results ingest FILES... "
                    f"--store {self.root} --rebuild"
                )
            raise ResultsError(f"{self.root} holds no runs; ingest some first")
        partitioning = pa.dataset.partitioning(
            pa.schema([("kind", pa.string()), ("month", pa.string())]), flavor="hive"
        )
        return pa.dataset.dataset(
            folder, format="parquet", partitioning=partitioning, exclude_invalid_files=False
        )

    def _read(self, table: str, **scan: Any) -> Any:
        """A table's rows (``columns``, ``filter``), a damaged file told in one line. A
        file that vanished (compacted by an ingest meanwhile) means listing again."""
        pa = _pyarrow()
        try:
            try:
                return self._dataset(table).to_table(**scan)
            except FileNotFoundError:
                return self._dataset(table).to_table(**scan)
        except (pa.ArrowException, OSError) as exc:
            raise ResultsError(
                f"{self.root}: a {table} file is damaged ({str(exc).splitlines()[0][:200]}); "
                "rebuild the store from its JSON Lines files"
            ) from None

    def runs(self, filters: Filters = NO_FILTERS) -> pd.DataFrame:
        """One row per complete run the filters keep: run_id, file, kind, time, commit,
        hostname, dirty, cases, header (its JSON)."""
        pa = _pyarrow()
        ds = pa.dataset
        predicate = _partition_predicate(ds, filters)
        low, high = filters.window()
        if low:
            predicate &= ds.field("utc") >= pa.scalar(low, pa.timestamp("us", "UTC"))
        if high:
            predicate &= ds.field("utc") <= pa.scalar(high, pa.timestamp("us", "UTC"))
        table = self._read("runs", filter=predicate)
        runs = table.to_pandas().sort_values("written", kind="stable")
        runs = runs.drop_duplicates("run_id", keep="last")  # a run's latest version
        for column, prefixes in (("commit", filters.commits), ("run_id", filters.run_ids)):
            if prefixes:
                runs = runs[runs[column].fillna("").map(lambda v, p=prefixes: v.startswith(p))]
        return runs.sort_values(["utc", "file"], kind="stable").reset_index(drop=True)

    def run_summaries(self) -> list[dict[str, Any]]:
        """The runs as ``results.list_runs`` lists files' runs, with their kind."""
        runs = self.runs()
        statuses = _in_run_order(
            _pyarrow(), self._read("cases", columns=["run_id", "written", "seq", "status"]), runs
        ).to_pandas()
        counts: dict[str, dict[str, int]] = {}
        for (run_id, status), n in statuses.groupby(["run_id", "status"]).size().items():
            counts.setdefault(run_id, {})[str(status)] = int(n)
        out = []
        for run in runs.to_dict("records"):
            header = json.loads(run["header"])
            env = header.get("environment") or {}
            out.append(
                {
                    "run_id": run["run_id"],
                    "file": run["file"],
                    "kind": run["kind"],
                    "time": run["time"],
                    "hostname": run["hostname"],
                    "commit": run["commit"],
                    "torch": env.get("torch_version"),
                    "command": header.get("command"),
                    "cases": int(run["cases"]),
                    "statuses": counts.get(run["run_id"], {}),
                }
            )
        return out

    def _case_predicate(self, ds: Any, filters: Filters, runs: pd.DataFrame) -> Any:
        predicate = _runs_partitions(ds, filters, runs) & ds.field("run_id").isin(
            runs["run_id"].tolist()
        )
        if filters.models:
            predicate &= ds.field("model").isin(list(filters.models))
        if filters.suites:
            predicate &= ds.field("suite").isin(list(filters.suites))
        for column, wanted in filters.options.items():
            values = [int(w) for w in wanted] if column in NUMERIC_OPTIONS else wanted
            predicate &= ds.field(column).isin(list(values))
        return predicate

    def load(
        self, filters: Filters = NO_FILTERS, samples: bool = True, summary: bool = False
    ) -> pd.DataFrame:
        """The cases the filters keep as the frame ``harness.store.frame`` documents,
        plus ``kind``; ``samples=False`` leaves ``latency.samples`` out (not read), and
        ``summary=True`` gives only the typed columns (identity, status, medians, the
        run's time and commit): what ``history`` needs, read without any JSON."""
        pa = _pyarrow()
        ds = pa.dataset
        runs = self.runs(filters)
        self.rows_read = {"runs": len(runs)}
        if runs.empty:
            return pd.DataFrame()
        predicate = self._case_predicate(ds, filters, runs)
        columns = ["run_id", "written", "seq", "kind"]
        columns += [*SUMMARY[2:], "dims", "file"] if summary else ["record"]
        table = self._read("cases", columns=columns, filter=predicate)
        self.rows_read["cases"] = table.num_rows
        cases = _in_run_order(pa, table, runs).drop_columns(["written"]).to_pandas()
        if summary:
            return _summary_frame(cases)
        stored = self._samples(filters, runs) if samples else {}
        return _full_frame(cases.to_dict("records"), runs, stored)

    def _samples(self, filters: Filters, runs: pd.DataFrame) -> dict[tuple[str, int], list[float]]:
        """Samples of the kept cases, reading only the row groups their statistics admit."""
        pa = _pyarrow()
        ds = pa.dataset
        rows = ds.field("run_id").isin(runs["run_id"].tolist())  # a row group's own columns
        if filters.models:
            rows &= ds.field("model").isin(list(filters.models))
        predicate = _runs_partitions(ds, filters, runs) & rows
        found: dict[tuple[str, int], list[float]] = {}
        versions = dict(zip(runs["run_id"], runs["written"]))
        read = 0
        try:
            for fragment in self._dataset("samples").get_fragments(filter=predicate):
                for group in fragment.split_by_row_group(filter=rows):
                    table = group.to_table(
                        columns=["run_id", "written", "seq", "samples"], filter=rows
                    )
                    read += group.row_groups[0].num_rows
                    for run_id, written, seq, values in zip(
                        *(table[c].to_pylist() for c in table.column_names)
                    ):
                        if versions.get(run_id) == written:
                            found[(run_id, seq)] = values
        except (pa.ArrowException, OSError) as exc:
            raise ResultsError(
                f"{self.root}: a samples file is damaged ({str(exc).splitlines()[0][:200]}); "
                "rebuild the store from its JSON Lines files"
            ) from None
        self.rows_read["samples"] = read
        return found


SUMMARY = (
    "file", "run_id", "model", "batch_size", "device", "dtype", "precision",
    "compile_mode", "backend", "mode", "repeat", "suite", "plugin", "status",
    "latency.median", "latency.per", "latency.block_size", "latency.sample_count",
    "throughput", "env.time", "env.git.commit", "env.git.dirty", "env.hostname",
)  # fmt: skip


def _partition_predicate(ds: Any, filters: Filters) -> Any:
    predicate = ds.scalar(True)
    if filters.kinds:
        predicate &= ds.field("kind").isin([slug(k) for k in filters.kinds])
    low, high = filters.window()
    if low:
        predicate &= (ds.field("month") >= low.strftime("%Y-%m")) | (ds.field("month") == "unknown")
    if high:
        predicate &= (ds.field("month") <= high.strftime("%Y-%m")) | (
            ds.field("month") == "unknown"
        )
    return predicate


def _in_run_order(pa: Any, table: Any, runs: pd.DataFrame) -> Any:
    """The rows of the run versions ``runs`` kept, in its order and each run's case order,
    each once: a reader may meet a run twice while a partition is compacted, or an
    older version of a replaced run. In Arrow: a fleet's year is a million rows."""
    compute = pa.compute
    versions = pa.array((runs["run_id"] + "\0" + runs["written"].astype(str)).tolist())
    key = compute.binary_join_element_wise(
        table["run_id"], compute.cast(table["written"], pa.string()), "\0"
    )
    rank = compute.index_in(key, value_set=versions)
    table = table.append_column("_rank", rank).filter(compute.is_valid(rank))
    table = table.sort_by([("_rank", "ascending"), ("seq", "ascending")])
    ranks, seqs = table["_rank"].to_numpy(), table["seq"].to_numpy()
    again = np.zeros(len(ranks), dtype=bool)
    again[1:] = (ranks[1:] == ranks[:-1]) & (seqs[1:] == seqs[:-1])
    if again.any():
        table = table.filter(pa.array(~again))
    return table.drop_columns(["_rank"])


def _runs_partitions(ds: Any, filters: Filters, runs: pd.DataFrame) -> Any:
    """The partitions that hold ``runs``, where they are few (one night, a month):
    their other partitions are then never opened."""
    pairs = runs[["kind", "month"]].drop_duplicates()
    if len(pairs) > MAX_PARTITIONS_LISTED:
        return _partition_predicate(ds, filters)
    predicate = ds.scalar(False)
    for kind, month in pairs.itertuples(index=False):
        predicate |= (ds.field("kind") == kind) & (ds.field("month") == month)
    return predicate


def _summary_frame(cases: pd.DataFrame) -> pd.DataFrame:
    parsed = {text: json.loads(text) for text in cases["dims"].unique()}  # a few distinct
    result = cases[list(SUMMARY)].assign(kind=cases["kind"])
    result.insert(result.columns.get_loc("batch_size") + 1, "dims", cases["dims"].map(parsed))
    for name in sorted({n for d in parsed.values() for n in d}):
        sizes = {text: d.get(name) for text, d in parsed.items()}
        result[f"dims.{name}"] = cases["dims"].map(sizes).astype("Int64")
    return result


def _full_frame(
    rows: Sequence[Mapping[str, Any]],
    runs: pd.DataFrame,
    stored: Mapping[tuple[str, int], list[float]],
) -> pd.DataFrame:
    headers = {
        r["run_id"]: (r["file"], frame.run_columns(RunHeader.from_json(json.loads(r["header"]))))
        for r in runs.to_dict("records")
    }
    triples, kinds = [], []
    for row in rows:
        data = json.loads(row["record"])
        samples = stored.get((row["run_id"], row["seq"]))
        if samples is not None and isinstance(data.get("latency"), dict):
            data["latency"]["samples"] = samples
        try:
            schema.check(data)
        except schema.InvalidRecord as exc:
            raise ResultsError(
                f"a case of run {row['run_id']} in the store is damaged ({exc}); "
                "rebuild the store from its JSON Lines files"
            ) from None
        file, columns = headers[row["run_id"]]
        triples.append((file, columns, CaseRecord.from_json(data)))
        kinds.append(row["kind"])
    result = frame.frame(triples)
    return result.assign(kind=kinds) if len(result) else result


def _read_strictly(path: Path) -> list[tuple[RunHeader, list[CaseRecord]]]:
    """The runs of a file (a resumed run once, its first header), or a one-line refusal
    if any line is damaged: a store holds only what its files say whole."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CorruptLineWarning)
        records = list(iter_records(path))
    damaged = [w for w in caught if issubclass(w.category, CorruptLineWarning)]
    if damaged:
        raise ResultsError(
            f"refused {path}: {damaged[0].message}; nothing from it was stored (fix or "
            "remove the damaged line, or rerun the run)"
        )
    runs: dict[str, tuple[RunHeader, list[CaseRecord]]] = {}
    for record in records:
        if isinstance(record, RunHeader):
            runs.setdefault(record.run_id, (record, []))
        elif record.run_id in runs:
            runs[record.run_id][1].append(record)
    return list(runs.values())


def _file_name(run_id: str) -> str:
    """A run id as a file name: itself where it is plain, else its hash."""
    if _SAFE.fullmatch(run_id) and not run_id.startswith("."):
        return run_id
    return "run-" + hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _digest(header: RunHeader, cases: Sequence[CaseRecord]) -> str:
    hasher = hashlib.sha256()
    for item in (header.to_json(), *(c.to_json() for c in cases)):
        hasher.update(json.dumps(item, sort_keys=True).encode())
        hasher.update(b"\n")
    return hasher.hexdigest()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _tables(
    pa: Any,
    file: str,
    header: RunHeader,
    cases: Sequence[CaseRecord],
    when: datetime | None,
    digest: str,
    written: int,
) -> dict[str, Any]:
    env = header.environment
    git = env.get("git") if isinstance(env.get("git"), Mapping) else {}
    run = {
        "run_id": header.run_id,
        "file": file,
        "utc": when,
        "time": env.get("time") if isinstance(env.get("time"), str) else None,
        "commit": git.get("commit") if isinstance(git.get("commit"), str) else None,
        "dirty": git.get("dirty") if isinstance(git.get("dirty"), bool) else None,
        "hostname": env.get("hostname") if isinstance(env.get("hostname"), str) else None,
        "cases": len(cases),
        "digest": digest,
        "written": written,
        "header": json.dumps(header.to_json()),
    }
    rows, samples = [], []
    for seq, case in enumerate(cases):
        data = case.to_json()
        latency = dict(case.latency) if isinstance(case.latency, Mapping) else None
        values = latency.pop("samples", None) if latency is not None else None
        if latency is not None:
            data["latency"] = latency
        rows.append(
            {
                "file": file,
                "run_id": header.run_id,
                "written": written,
                "seq": seq,
                "model": case.model,
                "batch_size": case.batch_size,
                **{name: getattr(case, name) for name in OPTION_COLUMNS},
                "repeat": case.repeat,
                "suite": case.suite,
                "plugin": case.plugin,
                "status": case.status,
                "dims": json.dumps(dict(case.dims), sort_keys=True),
                "latency.median": _number((latency or {}).get("median")),
                "latency.per": (latency or {}).get("per")
                if isinstance((latency or {}).get("per"), str)
                else None,
                "latency.block_size": _number((latency or {}).get("block_size")),
                "latency.sample_count": len(values) if isinstance(values, list) else None,
                "throughput": _number(case.throughput),
                "env.time": run["time"],
                "env.git.commit": run["commit"],
                "env.git.dirty": run["dirty"],
                "env.hostname": run["hostname"],
                "record": json.dumps(data),
            }
        )
        if isinstance(values, list):
            samples.append(
                {
                    "run_id": header.run_id,
                    "written": written,
                    "seq": seq,
                    "model": case.model,
                    "samples": [_number(v) for v in values],
                }
            )
    samples.sort(key=lambda r: (r["model"], r["seq"]))
    return {
        "runs": pa.Table.from_pylist([run], schema=RUNS_SCHEMA(pa)),
        "cases": pa.Table.from_pylist(rows, schema=CASES_SCHEMA(pa)),
        "samples": pa.Table.from_pylist(samples, schema=SAMPLES_SCHEMA(pa)),
    }


def RUNS_SCHEMA(pa: Any) -> Any:  # noqa: N802 - a schema, built once pyarrow is imported
    return pa.schema(
        [("run_id", pa.string()), ("file", pa.string()), ("utc", pa.timestamp("us", "UTC")),
         ("time", pa.string()), ("commit", pa.string()), ("dirty", pa.bool_()),
         ("hostname", pa.string()), ("cases", pa.int64()), ("digest", pa.string()),
         ("written", pa.int64()), ("header", pa.string())]
    )  # fmt: skip


def CASES_SCHEMA(pa: Any) -> Any:  # noqa: N802
    text = ("file", "run_id", "model", *OPTION_COLUMNS, "suite", "plugin", "status", "dims")
    return pa.schema(
        [(name, pa.string()) for name in text]
        + [("written", pa.int64()), ("seq", pa.int64()), ("batch_size", pa.int64()),
           ("repeat", pa.int64()),
           ("latency.median", pa.float64()), ("latency.per", pa.string()),
           ("latency.block_size", pa.float64()), ("latency.sample_count", pa.int64()),
           ("throughput", pa.float64()),
           ("env.time", pa.string()), ("env.git.commit", pa.string()),
           ("env.git.dirty", pa.bool_()), ("env.hostname", pa.string()),
           ("record", pa.string())]
    )  # fmt: skip


def SAMPLES_SCHEMA(pa: Any) -> Any:  # noqa: N802
    return pa.schema(
        [("run_id", pa.string()), ("written", pa.int64()), ("seq", pa.int64()),
         ("model", pa.string()), ("samples", pa.list_(pa.float64()))]
    )  # fmt: skip


def _write_parquet(pa: Any, table: Any, target: Path) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    try:
        pa.parquet.write_table(
            table, temporary, compression="zstd",
            row_group_size=ROW_GROUP if "samples" in table.column_names else 8 * ROW_GROUP,
        )  # fmt: skip
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_atomic(target: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    with os.fdopen(handle, "wb") as fh:
        fh.write(data)
    os.replace(temporary, target)
