"""Results on disk: JSON Lines, one run header then one line per case, never pickle.

Each case is appended and flushed as soon as it finishes, so an interrupted run
keeps every case it completed. A file may hold several runs (``--out`` on an
existing file appends a new run rather than overwriting the old one).

What a line holds is ``harness.store.record``: a
:class:`~harness.store.record.RunHeader` (``"record": "run"``) or a
:class:`~harness.store.record.CaseRecord` (``"record": "case"``), with the schema version
of the harness that wrote it. :class:`ResultsWriter` writes them and
:func:`iter_records` is the only reader: it checks each line against ``harness.store.schema``,
skips a damaged one with a warning naming file, line and why, and returns typed
records, a version-1 line upgraded. :func:`load` gives a run's cases as the
DataFrame ``harness.store.frame`` documents.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import math
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from harness.errors import HarnessWarning, ResultsError
from harness.store import frame, schema
from harness.store.record import SCHEMA_VERSION, CaseRecord, RunHeader
from harness.store.schema import InvalidRecord

SUFFIX = ".jsonl"


SHOWN_SKIPS = 10  # damaged lines of a file named one by one; the rest are counted


class CorruptLineWarning(HarnessWarning):
    """A line of a results file that is not a valid record (``schema.check``); it is
    skipped and the rest of the file read."""


def default_path(label: str, directory: Path = Path("results")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return directory / f"{stamp}-{label}{SUFFIX}"


def _ends_mid_line(path: Path) -> bool:
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with path.open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) != b"\n"


def _finite(value: Any) -> Any:
    """``value`` with every infinite or NaN float replaced by None (unknown)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class ResultsWriter:
    """Appends one run to a JSON Lines file, durably, one case at a time."""

    def __init__(self, path: Path, header: RunHeader):
        """The header's ``run_id`` may continue an earlier run (``--resume``)."""
        self.path = Path(path)
        self.run_id = header.run_id
        self.cases = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torn = _ends_mid_line(self.path)
            # unbuffered: a failed write leaves nothing pending for close() to trip on
            self._fh: BinaryIO = self.path.open("ab", buffering=0)
            if torn:  # a run killed mid-write: end its torn line so ours starts clean
                self._fh.write(b"\n")
        except OSError as exc:
            raise ResultsError(
                f"cannot write results to {self.path}: {exc.strerror}; "
                "choose a writable path with --out"
            ) from None
        self._write(header.to_json())

    def _write(self, record: Mapping[str, Any]) -> None:
        try:
            line = json.dumps(record, allow_nan=False, default=str)
        except ValueError:  # JSON has no inf or NaN: those figures are unknown
            line = json.dumps(_finite(record), allow_nan=False, default=str)
        try:
            data = memoryview((line + "\n").encode())
            while data:
                data = data[self._fh.write(data) :]
            os.fsync(self._fh.fileno())
        except OSError as exc:  # a full disk, a vanished mount: keep what is already there
            kept = (
                f"what was written before it ({self.cases} case"
                f"{'s' if self.cases > 1 else ''}) is kept; make room and finish the run "
                f"with --resume {self.path}"
                if self.cases
                else "no case was written"
            )
            raise ResultsError(
                f"cannot write results to {self.path}: {exc.strerror or exc}; {kept}"
            ) from None

    def write_case(self, record: CaseRecord) -> None:
        self._write(dataclasses.replace(record, run_id=self.run_id).to_json())
        self.cases += 1

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def result_files(source: str | Path | Iterable[str | Path]) -> list[Path]:
    sources = [source] if isinstance(source, (str, Path)) else list(source)
    files: list[Path] = []
    for item in map(Path, sources):
        if item.is_dir():
            found = sorted(item.rglob(f"*{SUFFIX}"))
            if not found:
                raise ResultsError(f"no {SUFFIX} results files in directory {item}")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            raise ResultsError(f"results path {item} does not exist")
    return files


def _no_constant(name: str) -> Any:
    raise InvalidRecord(f"{name} in it, which JSON does not allow")


def _parse(raw: bytes, first: bool) -> Any:
    """One line's JSON value; :class:`InvalidRecord` says why a line has none."""
    if first and raw.startswith(codecs.BOM_UTF8):  # an editor's byte order mark
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise InvalidRecord("not UTF-8 text") from None
    except RecursionError:
        raise InvalidRecord("JSON nested too deeply to read") from None
    except json.JSONDecodeError as exc:
        raise InvalidRecord(f"not JSON ({exc.msg} at column {exc.colno})") from None
    except InvalidRecord:
        raise
    except ValueError:  # Python's limit on the digits of an integer
        raise InvalidRecord("a number too long to read") from None


def _report_skipped(path: Path, skipped: Sequence[tuple[int, str]]) -> None:
    for lineno, why in skipped[:SHOWN_SKIPS]:
        warnings.warn(f"{path}:{lineno}: skipped: {why}", CorruptLineWarning, stacklevel=3)
    if len(skipped) > SHOWN_SKIPS:
        warnings.warn(
            f"{path}: skipped {len(skipped) - SHOWN_SKIPS} more damaged lines",
            CorruptLineWarning,
            stacklevel=3,
        )


def iter_records(path: Path) -> Iterator[RunHeader | CaseRecord]:
    """The valid records of one file, the only way results files are read; lines of a
    kind this version does not know are passed over.

    A line that is not a record ``schema.check`` accepts is skipped and reported once
    the file is read, as a :class:`CorruptLineWarning` naming file, line and why; a file
    with no valid run header is a :class:`ResultsError`. A byte order mark is read past.
    """
    seen_run, skipped = False, []
    try:
        fh = path.open("rb")  # bytes: a line that is not UTF-8 is one damaged line
    except OSError as exc:
        raise ResultsError(f"cannot read {path}: {exc.strerror or exc}") from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                record = _parse(raw, lineno == 1)
                version = record.get("schema") if isinstance(record, dict) else None
                if type(version) is int and version < 1:
                    raise InvalidRecord(
                        f"results schema {version} is not one this harness reads "
                        f"(1 to {SCHEMA_VERSION})"
                    )
                if type(version) is int and version > SCHEMA_VERSION:
                    raise ResultsError(
                        f"{path}:{lineno}: results schema {version} is newer "
                        f"than this harness reads ({SCHEMA_VERSION}); "
                        "upgrade harness"
                    )
                schema.check(record)
            except InvalidRecord as exc:
                skipped.append((lineno, str(exc)))
                continue
            if record["record"] == "run":
                seen_run = True
                yield RunHeader.from_json(record)
            elif record["record"] == "case":
                yield CaseRecord.from_json(record)
    if not seen_run:
        why = (
            f"; {len(skipped)} damaged line{'s' if len(skipped) > 1 else ''} skipped, "
            f"line {skipped[0][0]}: {skipped[0][1]}"
            if skipped
            else ""
        )
        raise ResultsError(
            f"{path}: no valid run: not a harness results file, or damaged "
            f"(no readable run header line{why})"
        )
    _report_skipped(path, skipped)


def last_run(path: str | Path) -> tuple[RunHeader, list[CaseRecord]]:
    """The last run header of a file and that run's case records: what a resume needs."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"cannot resume {path}: no such results file")
    records = list(iter_records(path))
    header = [r for r in records if isinstance(r, RunHeader)][-1]
    if header.request is None:
        raise ResultsError(
            f"cannot resume {path}: its run header has no request (written by an older harness)"
        )
    cases = [r for r in records if isinstance(r, CaseRecord) and r.run_id == header.run_id]
    return header, cases


def environment_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The environment that measured a row of :func:`load`: its run's ``env.*`` columns,
    unprefixed, overridden by the case's own ``environment.*`` where it has one (a case
    measured on a cluster node, or one merged from a shard)."""
    run = {key[4:]: value for key, value in row.items() if key.startswith("env.")}
    own = {key[12:]: value for key, value in row.items() if key.startswith("environment.")}
    return {**run, **own} if isinstance(own.get("hostname"), str) else run


def load(source: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """The cases of result files or directories of them, one row each, with their runs'
    environment and settings: the frame ``harness.store.frame`` documents."""
    cases: list[tuple[str, Mapping[str, Any], CaseRecord]] = []
    for path in result_files(source):
        runs: dict[str | None, dict[str, Any]] = {}
        for record in iter_records(path):
            if isinstance(record, RunHeader):
                runs[record.run_id] = frame.run_columns(record)
            else:
                cases.append((str(path), runs.get(record.run_id, {}), record))
    return frame.frame(cases)


def list_runs(source: str | Path | Iterable[str | Path]) -> list[dict[str, Any]]:
    """One summary per run (a resumed run is one run), oldest first."""
    runs: dict[tuple[str, Any], dict[str, Any]] = {}
    for path in result_files(source):
        for record in iter_records(path):
            key = (str(path), record.run_id)
            if isinstance(record, RunHeader):
                env = record.environment
                summary = runs.setdefault(
                    key,
                    {
                        "run_id": record.run_id,
                        "file": str(path),
                        "time": env.get("time"),
                        "hostname": env.get("hostname"),
                        "commit": record.commit,
                        "torch": env.get("torch_version"),
                        "command": list(record.command) if record.command else None,
                        "cases": 0,
                        "statuses": {},
                    },
                )
                summary["resumed"] = summary.get("resumed", -1) + 1
            elif key in runs:
                summary = runs[key]
                summary["cases"] += 1
                status = record.status
                summary["statuses"][status] = summary["statuses"].get(status, 0) + 1
    return sorted(runs.values(), key=lambda r: (r["time"] or "", r["file"]))


def merge_runs(paths: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Join the last runs of ``paths`` (shards of one sweep) into one run in ``out``.

    Refused when their requests (shard aside) or measurement settings differ, when a
    shard or a case appears twice, or when ``out`` is one of the inputs. Missing shards
    are allowed and reported, so a failed CI job does not block the others' results.
    """
    out = Path(out)
    if any(Path(p).resolve() == out.resolve() for p in paths):
        raise ResultsError(f"the merged file {out} is one of the inputs; choose another --out")
    runs = [(Path(p), *last_run(p)) for p in paths]
    first_path, first, _ = runs[0]
    request = {**(first.request or {}), "shard": None}
    shards: dict[tuple[int, int] | None, Path] = {}
    for path, header, _ in runs[1:]:
        for part, plural in (("settings", "settings"), ("request", "requests")):
            mine = {**getattr(header, part), **({"shard": None} if part == "request" else {})}
            theirs = request if part == "request" else first.settings
            differing = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            if differing:
                raise ResultsError(
                    f"cannot merge {path} with {first_path}: their {plural} "
                    f"differ in {', '.join(differing)}"
                )
    for path, header, _ in runs:
        shard = (header.request or {}).get("shard")
        shard = tuple(shard) if shard else None
        if shard in shards:
            raise ResultsError(
                f"{path} and {shards[shard]} are the same shard "
                f"({'/'.join(map(str, shard)) if shard else 'unsharded'})"
            )
        shards[shard] = path
    counts = {s[1] for s in shards if s}
    missing = sorted(set(range(1, max(counts) + 1)) - {s[0] for s in shards if s}) if counts else []
    seen: dict[tuple, Path] = {}
    merged_from = []
    for path, header, cases in runs:
        for case in cases:
            key = case.run_key()
            if key in seen:
                raise ResultsError(f"case {case.label} is in both {seen[key]} and {path}")
            seen[key] = path
        merged_from.append(
            {
                "file": str(path),
                "run_id": header.run_id,
                "shard": (header.request or {}).get("shard"),
                "hostname": header.environment.get("hostname"),
                "cases": len(cases),
            }
        )
    header = RunHeader(
        command=first.command,
        request=request,
        environment=first.environment,
        settings=first.settings,
        merged_from=tuple(merged_from),
        missing_shards=tuple(missing),
    )
    with ResultsWriter(out, header) as writer:
        for _path, shard_header, cases in runs:
            for case in cases:  # each case keeps the environment that measured it
                writer.write_case(
                    dataclasses.replace(
                        case, environment=case.environment or shard_header.environment
                    )
                )
    return {"out": str(out), "runs": len(runs), "cases": len(seen), "missing_shards": missing}
