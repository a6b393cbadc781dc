"""What a reader asks of runs: models, suites, hardware kinds, case options, a time or
commit window. A store applies them where the data lies (partitions, row groups); files,
read whole, are filtered after reading by the same rules (:meth:`Filters.keep_cases`).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from harness.errors import UsageError

# Case fields a store keeps as typed columns (filters, history); its record JSON holds all.
OPTION_COLUMNS = ("device", "dtype", "precision", "compile_mode", "backend", "mode")
NUMERIC_OPTIONS = ("batch_size", "repeat")
FILTERABLE = (*OPTION_COLUMNS, *NUMERIC_OPTIONS, "status")


def slug(text: str) -> str:
    """A partition value safe as a folder name whatever a file said: lower-case letters,
    digits and dashes, at most 64 characters."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:64].strip("-")
    return cleaned or "unknown"


def environment_kind(env: Mapping[str, Any]) -> str:
    """A run's hardware kind, where ``--kind`` at ingest does not say it: the
    accelerator's name, else the CPU model and architecture (comparisons over time stay
    within a kind)."""
    gpus = env.get("gpus") if isinstance(env.get("gpus"), list) else []
    names = [g.get("name") for g in gpus if isinstance(g, Mapping) and g.get("name")]
    if names:
        return slug(str(names[0]))
    return slug(f"{env.get('cpu_model') or 'unknown-cpu'}-{env.get('machine') or ''}")


def utc(time: Any) -> datetime | None:
    if not isinstance(time, str):
        return None
    try:
        when = datetime.fromisoformat(time)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


@dataclass(frozen=True)
class Filters:
    """What a reader asks of a store (or of files, applied after reading them): empty
    means everything. Names match exactly; ``commits`` and ``run_ids`` by prefix;
    ``since``/``until`` are ISO dates or times, in UTC where they name no zone."""

    models: tuple[str, ...] = ()
    suites: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    commits: tuple[str, ...] = ()
    run_ids: tuple[str, ...] = ()
    options: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # FILTERABLE

    def __post_init__(self) -> None:
        unknown = sorted(set(self.options) - set(FILTERABLE))
        if unknown:
            raise UsageError(
                f"cannot filter on {', '.join(unknown)}; case options to filter on: "
                f"{', '.join(FILTERABLE)}"
            )
        for column in NUMERIC_OPTIONS:
            bad = [w for w in self.options.get(column, ()) if not str(w).isdigit()]
            if bad:
                raise UsageError(f"--where {column}={bad[0]}: {column} is a whole number, e.g. 8")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and utc(value) is None:
                raise UsageError(f"--{name} {value!r} is not an ISO date or time (2026-11-30)")

    @classmethod
    def of_options(cls, args: Any) -> Filters:
        """The filters of a command's options (``--model``, ``--where``...: cli._filters)."""
        options: dict[str, tuple[str, ...]] = {}
        for key, values in args.where:
            options[key] = options.get(key, ()) + tuple(values)
        return cls(
            models=tuple(args.model),
            suites=tuple(args.suite),
            kinds=tuple(args.kind),
            since=args.since,
            until=args.until,
            commits=commit_window(args.commits) if args.commits else (),
            options=options,
        )

    @property
    def empty(self) -> bool:
        return self == Filters()

    def window(self) -> tuple[datetime | None, datetime | None]:
        return utc(self.since), utc(self.until)

    def keep_cases(self, cases: pd.DataFrame) -> pd.DataFrame:
        """The rows of a results frame these filters keep (for files, read whole)."""
        if cases.empty or self.empty:
            return cases
        keep = pd.Series(True, index=cases.index)
        for column, wanted in (("model", self.models), ("suite", self.suites)):
            if wanted:
                keep &= cases[column].isin(wanted)
        if self.kinds:
            keep &= _kinds(cases).isin([slug(k) for k in self.kinds])
        for column, wanted in self.options.items():
            if column in NUMERIC_OPTIONS:  # a frame holds 8.0 where a batch size is missing
                numbers = pd.to_numeric(cases[column], errors="coerce")
                keep &= numbers.isin([int(w) for w in wanted])
            else:
                keep &= cases[column].astype(str).isin([str(w) for w in wanted])
        for column, prefixes in (("env.git.commit", self.commits), ("run_id", self.run_ids)):
            if prefixes:
                values = cases.get(column, pd.Series(None, index=cases.index)).astype(str)
                keep &= values.map(lambda v, p=prefixes: v.startswith(p))
        low, high = self.window()
        if low or high:
            times = cases.get("env.time", pd.Series(None, index=cases.index)).map(utc)
            keep &= times.map(lambda t: t is not None and (not low or t >= low))
            keep &= times.map(lambda t: t is not None and (not high or t <= high))
        return cases[keep]


def _kinds(cases: pd.DataFrame) -> pd.Series:
    """Each row's hardware kind: a store's column, else that of its run's environment."""
    if "kind" in cases.columns:
        return cases["kind"]
    runs = cases.drop_duplicates(["file", "run_id"])
    columns = [c for c in cases.columns if c.startswith("env.")]
    found = {
        (row["file"], row["run_id"]): environment_kind(
            {c[4:]: row[c] for c in columns if not _missing(row[c])}
        )
        for row in runs[["file", "run_id", *columns]].to_dict("records")
    }
    return pd.Series([found[k] for k in zip(cases["file"], cases["run_id"])], index=cases.index)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def commit_window(text: str) -> tuple[str, ...]:
    """``A..B`` as the commits ``git rev-list A..B`` gives in the repository here (B and
    the commits since A), else a comma-separated list of commit hashes or prefixes."""
    if ".." not in text:
        return tuple(c.strip() for c in text.split(",") if c.strip())
    try:
        out = subprocess.run(
            ["git", "rev-list", "--end-of-options", text],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"--commits {text}: cannot run git ({exc})") from None
    if out.returncode != 0:
        reason = (out.stderr.strip().splitlines() or ["git failed"])[0]
        raise UsageError(
            f"--commits {text}: {reason}; run it inside the repository the runs measured"
        )
    commits = tuple(out.stdout.split())
    if not commits:
        raise UsageError(f"--commits {text} names no commits (is the window reversed?)")
    return commits


NO_FILTERS = Filters()
