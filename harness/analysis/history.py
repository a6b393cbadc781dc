"""Change points over a series of runs: when did a case get slower or faster, and by how much.

Each case becomes a series with one point per run (its median and raw samples), in
time or commit order. A step is a lasting change of the level of the runs, found by
segmentation and judged by the change of level:

1. Segmentation of the log-medians into stretches of constant level: the exact optimum
   of least squares plus ``PENALTY * log(n)`` per change point, by dynamic programming
   over every segmentation (the optimum PELT finds). Costs are in units of the
   series' own run-to-run noise, estimated robustly from the differences of
   consecutive points, so a noisy case needs a larger step than a quiet one. A point
   further than ``CLIP`` noise units from the median of the ``2 * SPELL + 1`` around it
   (a run in a slow spell of a shared machine) is first replaced by that median, and
   left out of the judgement, so a spell of up to ``SPELL`` runs cannot make a step; a
   segment needs at least ``MIN_SEGMENT`` runs.
2. Each boundary is put at the centre of the three runs most probably holding the
   change between its neighbours (``locate``).
3. Judgement of the change of level between the whole segments either side: the ratio
   of the medians of their runs, with an interval and p-value from the scatter of the
   runs themselves (``level_change``). The samples inside a run do not see the
   run-to-run (night-to-night) noise, so they say nothing here. The p-value pays for
   the places the boundary could have taken and is adjusted by Benjamini-Hochberg
   across all cases; a step is significant and its interval reaches the threshold
   (``judge``). Boundaries that fail are dropped, the weakest of each series first,
   and the others judged again against the merged segments.

asv (``asv.step_detect``) fits a piecewise-constant model to the medians alone and
judges steps by their size; ``scripts/validate_history.py`` compares the two, and
checks years of nightly runs.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis import compare, significance
from harness.analysis.noise import MAD_EFFICIENCY, MAD_TO_SD
from harness.errors import HistoryError
from harness.measure.stats import per_label, t_quantile, t_tail
from harness.sweep.identity import CaseKey

METRICS = ("latency", "throughput")
ORDERS = ("time", "commit")
PENALTY = 3.0  # per change point, times log(n), in squared noise units (BIC uses 2)
CLIP = 3.0  # noise units from the runs either side beyond which a run is in a spell
MIN_SEGMENT = 2  # runs
SPELL = 3  # runs: a spell this long or shorter is the minority of the 2 SPELL - 1 either side
# The median of m runs varies as this times sd^2 / m: the normal's asymptotic variance,
# above the exact one for every m (1.57 against 1 for one run, 0.79 against 0.5 for two).
MEDIAN_VARIANCE = math.pi / 2
NOISE_FLOOR = 1e-3  # relative: keeps a noiseless series from splitting at rounding


@dataclass(frozen=True)
class Run:
    """Where a point comes from: one run of one results file."""

    file: str
    run_id: str
    time: str | None
    commit: str | None
    dirty: bool | None
    hostname: str | None

    @property
    def key(self) -> tuple[str, str]:
        """Unique among runs: a run id is unique within its file."""
        return self.file, self.run_id

    @property
    def label(self) -> str:
        """The short commit (``+`` when the tree was dirty), else the date and time."""
        if self.commit:
            return self.commit[:8] + ("+" if self.dirty else "")
        return (self.time or self.run_id)[:16].replace("T", " ")


@dataclass(frozen=True)
class Point:
    run: Run
    value: float  # the metric's median (over the run's repeats, if it had several)
    samples: tuple[tuple[float, ...], ...]  # per repeat (process), in the metric's terms
    per: str = ""  # what one latency sample is: "per call", "per block of 87" (stats.per_label)

    @property
    def pooled(self) -> list[float]:
        return [v for repeat in self.samples for v in repeat]


@dataclass(frozen=True)
class Series:
    key: CaseKey
    label: str
    points: tuple[Point, ...]

    @property
    def values(self) -> list[float]:
        return [p.value for p in self.points]


@dataclass(frozen=True)
class Step:
    """A confirmed change of level: ``index`` is the first point at the new level."""

    case: str
    key: CaseKey
    index: int
    run: Run
    previous: Run
    before: float  # median of the segment's runs before (slow spells left out), in the
    # metric's units
    after: float
    ratio: float  # after over before: the change of level, which ``judge`` judges
    ci_low: float  # its 95 % interval, from the runs' scatter
    ci_high: float
    p_value: float  # times the places the step could have been
    q_value: float
    verdict: str  # "slower" (a regression) or "faster" (an improvement)

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "index": self.index,
            "run_id": self.run.run_id,
            "commit": self.run.commit,
            "time": self.run.time,
            "previous_run_id": self.previous.run_id,
            "previous_commit": self.previous.commit,
            "before": self.before,
            "after": self.after,
            "ratio": self.ratio,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p_value": self.p_value,
            "q_value": self.q_value,
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class History:
    metric: str
    threshold: float
    order: str
    runs: tuple[Run, ...]
    series: tuple[Series, ...]
    steps: tuple[Step, ...]

    def steps_of(self, series: Series) -> list[Step]:
        return [s for s in self.steps if s.case == series.label]


# ---- segmentation -------------------------------------------------------------------


def noise_scale(*stretches: Sequence[float]) -> float:
    """Run-to-run standard deviation of log values, from the median absolute difference
    of consecutive values within each stretch, pooled over the stretches.

    A step moves one difference and an outlier two, so the median ignores both.
    """
    diffs = np.abs(np.concatenate([np.diff(np.asarray(s, dtype=float)) for s in stretches]))
    if len(diffs) < 2:
        return NOISE_FLOOR
    return max(MAD_TO_SD * float(np.median(diffs)) / math.sqrt(2), NOISE_FLOOR)


def _side_medians(z: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The median of the up to ``width`` values before each value, and of those after
    (NaN where there are none)."""
    n = len(z)
    padded = np.concatenate([np.full(width, np.nan), z, np.full(width, np.nan)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)
    before, after = np.full(n, np.nan), np.full(n, np.nan)
    before[1:] = _row_medians(windows[1:n])
    after[:-1] = _row_medians(windows[width + 1 : width + n])
    return before, after


def _row_medians(windows: np.ndarray) -> np.ndarray:
    """``nanmedian`` by rows, its slow path only for the rows at the ends that hold NaN."""
    medians = np.median(windows, axis=1)
    edges = np.isnan(medians)
    if edges.any():
        medians[edges] = [np.median(row[~np.isnan(row)]) for row in windows[edges]]
    return medians


Sums = tuple[np.ndarray, np.ndarray, np.ndarray]


def _prefix_sums(y: Sequence[float], kept: Sequence[bool] | None = None) -> Sums:
    """Running count, sum and sum of squares of the kept values of ``y`` (all of them
    when ``kept`` is None)."""
    y = np.asarray(y, dtype=float)
    w = np.ones(len(y)) if kept is None else np.asarray(kept, dtype=float)
    return tuple(np.concatenate([[0.0], np.cumsum(x)]) for x in (w, w * y, w * y * y))


def _count(sums: Sums, start: Any, stop: Any) -> Any:
    return sums[0][stop] - sums[0][start]


def _squares(sums: Sums, start: Any, stop: Any) -> Any:
    """Sum of squared deviations from their mean of the kept values of ``y[start:stop]``
    (either may be an array of indices); of several series' sums (2-D, a row each), for
    one ``stop`` and an array of starts, a row each."""
    s0, s1, s2 = sums
    if s0.ndim == 2:
        stop = [stop]
    return (s2[..., stop] - s2[..., start]) - (s1[..., stop] - s1[..., start]) ** 2 / np.maximum(
        s0[..., stop] - s0[..., start], 1
    )


def segment(
    y: Sequence[float],
    penalty: float,
    min_size: int = MIN_SEGMENT,
    kept: Sequence[bool] | None = None,
) -> list[int]:
    """Start indices of the segments after the first in the least-squares optimal
    piecewise-constant fit of ``y`` (its ``kept`` values) with ``penalty`` per change
    (exact, O(n^2)); a segment spans at least ``min_size`` values."""
    return segment_many([(y, kept)], [penalty], min_size)[0]


def segment_many(
    series: Sequence[tuple[Sequence[float], Sequence[bool] | None]],
    penalties: Sequence[float],
    min_size: int = MIN_SEGMENT,
) -> list[list[int]]:
    """``segment`` of each ``(y, kept)`` with its penalty: series of one length share
    each step of the dynamic programme (the same arithmetic, element by element, so the
    same cuts), which a year of a fleet's cases needs (thousands of series of 365)."""
    found: list[list[int]] = [[] for _ in series]
    by_length: dict[int, list[int]] = {}
    for index, (y, _) in enumerate(series):
        if len(y) >= 2 * min_size:
            by_length.setdefault(len(y), []).append(index)
    for n, members in by_length.items():
        sums = [np.stack(parts) for parts in zip(*(_prefix_sums(*series[i]) for i in members))]
        penalty = np.asarray([penalties[i] for i in members])[:, None]
        rows = np.arange(len(members))
        best = np.full((len(members), n + 1), math.inf)
        best[:, 0] = -penalty[:, 0]
        start_of = np.zeros((len(members), n + 1), dtype=int)
        for end in range(min_size, n + 1):
            starts = np.arange(0, end - min_size + 1)
            total = best[:, starts] + _squares(sums, starts, end) + penalty
            chosen = np.argmin(total, axis=1)
            best[:, end], start_of[:, end] = total[rows, chosen], starts[chosen]
        for row, index in enumerate(members):
            cuts, end = [], n
            while end > 0:
                end = int(start_of[row, end])
                if end > 0:
                    cuts.append(end)
            found[index] = sorted(cuts)
    return found


def locate(
    z: Sequence[float],
    cuts: Sequence[int],
    min_size: int = MIN_SEGMENT,
    kept: Sequence[bool] | None = None,
) -> list[int]:
    """Each cut moved to the centre of the three consecutive positions most probably
    holding the one change between its neighbouring cuts.

    ``z`` is in units of its noise (its ``kept`` values count). With flat priors on the
    two levels, a change at k has the posterior ``exp(-SS / 2) / sqrt(m_left *
    m_right)`` (SS: the squared deviations of both sides from their means; m: their
    sizes). The least-squares position is the single most probable one; this one is
    within one of the change most often, and of equally likely centres (a clear
    change) it takes the most probable.
    """
    sums = _prefix_sums(z, kept)
    bounds = [0, *cuts, len(z)]
    located = []
    for lo, hi in zip(bounds, bounds[2:]):
        at = np.arange(lo + min_size, hi - min_size + 1)
        sizes = np.maximum(_count(sums, lo, at) * _count(sums, at, hi), 1)
        log_p = -(_squares(sums, lo, at) + _squares(sums, at, hi) + np.log(sizes)) / 2
        p = np.exp(log_p - log_p.max())
        window = np.convolve(p, np.ones(3), "same")
        located.append(int(at[max(range(len(at)), key=lambda j: (window[j], p[j]))]))
    return located


def standardised(values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Log-values in noise units, and which runs are kept: all but those in a spell
    (of the machine), further than ``CLIP`` both from the median of the ``2 * SPELL - 1``
    runs before and from that of the runs after (of the one side there is, at an end).
    A spell of up to ``SPELL`` runs is the minority of either side of each of its runs;
    a run next to a step is near the runs on its own side."""
    z = np.log(np.asarray(values, dtype=float))
    z /= noise_scale(z)
    far = [np.isnan(m) | (np.abs(z - m) > CLIP) for m in _side_medians(z, 2 * SPELL - 1)]
    return z, ~(far[0] & far[1])


def levels(values: Sequence[float], cuts: Sequence[int]) -> list[tuple[int, int, float]]:
    """``(start, stop, median)`` of each segment between ``cuts``."""
    bounds = [0, *cuts, len(values)]
    return [(a, b, float(np.median(values[a:b]))) for a, b in zip(bounds, bounds[1:])]


# ---- level changes ------------------------------------------------------------------


@dataclass(frozen=True)
class LevelChange:
    """A boundary's change of level: the medians of the per-run values of the segments
    either side, and the 95 % interval and p-value of their ratio."""

    before: float
    after: float
    ci_low: float  # of after / before
    ci_high: float
    p_value: float

    @property
    def ratio(self) -> float:
        return self.after / self.before


def level_change(before: Sequence[float], after: Sequence[float]) -> LevelChange:
    """After over before as the ratio of the medians of two segments' per-run values.

    Its uncertainty is that of the runs, not of the samples inside them: the run-to-run
    standard deviation ``sd`` of both segments' log values (``noise_scale``, pooled)
    gives each median the variance ``MEDIAN_VARIANCE * sd^2 / m`` over m runs, and the
    interval and p-value are Student's t with the degrees of freedom of a MAD
    (``MAD_EFFICIENCY`` per difference of consecutive runs).
    """
    logs = np.log(np.asarray(before, dtype=float)), np.log(np.asarray(after, dtype=float))
    se = noise_scale(*logs) * math.sqrt(MEDIAN_VARIANCE * sum(1 / len(x) for x in logs))
    df = MAD_EFFICIENCY * sum(len(x) - 1 for x in logs)
    first, second = float(np.median(before)), float(np.median(after))
    log_ratio = math.log(second / first)
    half = t_quantile(1 - significance.ALPHA, df) * se
    return LevelChange(
        first,
        second,
        math.exp(log_ratio - half),
        math.exp(log_ratio + half),
        t_tail(log_ratio / se, df),
    )


def level_changes(
    values: Sequence[float], cuts: Sequence[int], kept: Sequence[bool]
) -> list[LevelChange | None]:
    """Each boundary's change between the whole segments either side, of their ``kept``
    runs (None where a side keeps fewer than ``MIN_SEGMENT``), its p-value multiplied
    by the number of places the boundary could have taken between its neighbours
    (Bonferroni: the segmentation put it at the most different)."""
    bounds = [0, *cuts, len(values)]
    changes: list[LevelChange | None] = []
    for lo, cut, hi in zip(bounds, bounds[1:], bounds[2:]):
        sides = [[values[i] for i in range(a, b) if kept[i]] for a, b in ((lo, cut), (cut, hi))]
        if min(map(len, sides)) < MIN_SEGMENT:
            changes.append(None)
            continue
        change = level_change(*sides)
        places = hi - lo - 2 * MIN_SEGMENT + 1
        changes.append(replace(change, p_value=min(1.0, change.p_value * places)))
    return changes


def judge(
    change: LevelChange | None, threshold: float, worse_above: bool, p_value: float
) -> str | None:
    """``slower`` or ``faster`` when the change is significant (``p_value``, an adjusted
    one, at most ``significance.ALPHA``) and its interval reaches ``threshold``; None when it
    is not significant, its interval shows it smaller than the threshold, or there is
    no change to judge.

    ``worse_above``: a larger value is worse (latency) or better (throughput).
    """
    bound = 1 + threshold
    if change is None or p_value > significance.ALPHA:
        return None
    if 1 / bound < change.ci_low and change.ci_high < bound:
        return None
    return "slower" if (change.ratio > 1) == worse_above else "faster"


def detect(
    series: Sequence[Series], metric: str = "latency", threshold: float = compare.DEFAULT_THRESHOLD
) -> list[Step]:
    """Steps of every series: the change points of its optimal segmentation, each
    ``locate``d between its neighbours, whose level changes ``judge`` confirms on
    q-values across all series (one hypothesis per boundary, and one, p = 1, per series
    with none: it was searched too). While some fail, the weakest failing boundary of
    each series (the largest p-value) is dropped and the rest located and judged again
    against the merged segments."""
    worse_above = metric != "throughput"
    standard = [standardised(s.values) for s in series]
    candidates = segment_many(standard, [PENALTY * math.log(len(z)) for z, _ in standard])
    while True:
        cuts = [locate(z, c, kept=kept) for (z, kept), c in zip(standard, candidates)]
        changes = [
            (i, j, change)
            for i, s in enumerate(series)
            for j, change in enumerate(level_changes(s.values, cuts[i], standard[i][1]))
        ]
        p_values = [1.0 if c is None else c.p_value for _, _, c in changes]
        q_values = significance.benjamini_hochberg(p_values + [1.0] * sum(not c for c in cuts))
        verdicts = [judge(c, threshold, worse_above, q) for (_, _, c), q in zip(changes, q_values)]
        weakest: dict[int, tuple[float, int]] = {}
        for (i, j, _), p, verdict in zip(changes, p_values, verdicts):
            if verdict is None and p >= weakest.get(i, (-1.0, 0))[0]:
                weakest[i] = (p, j)
        if not weakest:
            break
        for i, (_, j) in weakest.items():
            del candidates[i][j]
    steps = []
    for (i, j, c), q, verdict in zip(changes, q_values, verdicts):
        s, at = series[i], cuts[i][j]
        steps.append(
            Step(
                s.label,
                s.key,
                at,
                s.points[at].run,
                s.points[at - 1].run,
                c.before,
                c.after,
                c.ratio,
                c.ci_low,
                c.ci_high,
                c.p_value,
                q,
                verdict,
            )
        )
    return steps


# ---- runs and series from results ---------------------------------------------------


def runs_of(frame: pd.DataFrame) -> list[Run]:
    """Each run of a results frame once, in the frame's order."""
    columns = ["file", "run_id", "env.time", "env.git.commit", "env.git.dirty", "env.hostname"]
    heads = frame.reindex(columns=columns).drop_duplicates(["file", "run_id"])
    return [
        Run(
            str(r["file"]),
            str(r["run_id"]),
            *(None if pd.isna(r[c]) else r[c] for c in columns[2:]),
        )
        for r in heads.to_dict("records")
    ]


def _when(run: Run) -> datetime:
    if not run.time:
        raise HistoryError(
            f"run {run.run_id} in {run.file} records no time; order by --order commit instead"
        )
    try:
        when = datetime.fromisoformat(run.time)
    except ValueError:
        raise HistoryError(
            f"run {run.run_id} in {run.file} has an unreadable time {run.time!r}"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _commit_positions() -> dict[str, int]:
    """Oldest-first position of every commit of the repository in the current directory."""
    hint = (
        "--order commit takes the order from the git repository in the current "
        "directory; run it there, or use --order time"
    )
    try:
        out = subprocess.run(
            ["git", "rev-list", "--topo-order", "--reverse", "--all"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HistoryError(f"cannot run git ({exc}); {hint}") from None
    if out.returncode != 0:
        reason = (out.stderr.strip().splitlines() or ["git failed"])[0]
        raise HistoryError(f"{reason}; {hint}")
    return {commit: i for i, commit in enumerate(out.stdout.split())}


def order_runs(runs: Sequence[Run], order: str = "time") -> list[Run]:
    """Runs oldest first, by time or by commit (runs of one commit by time)."""
    if order not in ORDERS:
        raise HistoryError(f"unknown order {order!r}; choose from {', '.join(ORDERS)}")
    by_time = sorted(runs, key=_when)
    if order == "time":
        return by_time
    missing = [r.run_id for r in runs if not r.commit]
    if missing:
        raise HistoryError(f"runs {', '.join(missing[:3])} record no git commit; use --order time")
    positions = _commit_positions()
    unknown = sorted({r.commit[:10] for r in runs if r.commit not in positions})
    if unknown:
        raise HistoryError(
            f"commits {', '.join(unknown[:3])} are not in the git repository "
            "in the current directory; run from the repository the runs "
            "measured, or use --order time"
        )
    return sorted(by_time, key=lambda r: positions[r.commit])


_IDENTITY = (
    "model",
    "batch_size",
    "device",
    "dtype",
    "precision",
    "compile_mode",
    "backend",
    "mode",
)
_VALUE = {"latency": "latency.median", "throughput": "throughput"}


def build_series(frame: pd.DataFrame, runs: Sequence[Run], metric: str = "latency") -> list[Series]:
    """One series per case, one point per run in ``runs`` order that has it (status ok,
    with samples and a value); a point pools the run's repeats of the case (the median of
    their values), as ``compare.latest_cases`` and ``compare.metric_value`` read a run.
    Runs of several hardware kinds (a store's ``kind`` column) give each kind its own
    series, labelled ``[KIND] case``.

    A store's summary frame has no samples (``latency.sample_count`` says how many there
    were): its points carry none, and history's judgement, which reads the runs'
    medians, is the same. Grouped by columns, not row by row: a year of a fleet's nights
    is a million rows."""
    ok = frame[frame["status"] == "ok"]
    if ok.empty:
        return []
    position = {run.key: i for i, run in enumerate(runs)}
    run_codes = ok.groupby(["file", "run_id"], sort=False).ngroup()
    firsts = ok.loc[run_codes.drop_duplicates().index, ["file", "run_id"]]
    at = run_codes.map(dict(enumerate(position.get(k) for k in firsts.itertuples(index=False))))
    kinds = ok["kind"].dropna().unique() if "kind" in ok.columns else ()
    dims = sorted(c for c in ok.columns if c.startswith("dims."))  # dims, by column
    identity = ok.reindex(columns=[*_IDENTITY, *dims]).assign(
        batch_size=ok["batch_size"].fillna(-1),
        kind=ok["kind"].fillna("") if len(kinds) > 1 else "",
    )
    codes = identity.groupby([*_IDENTITY, *dims, "kind"], sort=False, dropna=False).ngroup()
    keys: dict[tuple[str, CaseKey], int] = {}  # raw columns CaseKey.make folds together
    canonical = {}
    firsts = codes.drop_duplicates()
    for code, index in zip(firsts, firsts.index):
        key = (identity.at[index, "kind"], CaseKey.of_record(ok.loc[index], measured=True))
        canonical[code] = keys.setdefault(key, len(keys))
    if "latency.samples" in ok.columns:
        sampled = ok["latency.samples"].map(lambda v: isinstance(v, list) and len(v) >= 2)
    else:
        sampled = ok.get("latency.sample_count", pd.Series(0, index=ok.index)).fillna(0) >= 2
    if metric == "latency":  # what one sample is, from the few distinct (per, block) pairs
        pairs = ok.reindex(columns=["latency.per", "latency.block_size"]).astype(object)
        pair_codes = pairs.groupby(list(pairs.columns), sort=False, dropna=False).ngroup()
        first_pairs = pair_codes.drop_duplicates()
        labels = {
            code: per_label([tuple(pairs.loc[index])])
            for code, index in zip(first_pairs, first_pairs.index)
        }
        unit = pair_codes.map(labels)
    else:
        unit = pd.Series("", index=ok.index)
    table = pd.DataFrame(
        {
            "run": at,
            "key": codes.map(canonical),
            "value": pd.to_numeric(ok[_VALUE[metric]], errors="coerce"),
            "sampled": sampled,
            "unit": unit,
        }
    ).dropna(subset=["run"])
    grouped = table.groupby(["key", "run"], sort=True)
    points_of = grouped.agg(
        value=("value", "median"),
        sampled=("sampled", "sum"),
        unit=("unit", "first"),
        units=("unit", "nunique"),
    )
    kept = points_of[
        (points_of["sampled"] > 0) & points_of["value"].notna() & (points_of["value"] != 0)
    ]
    with_samples = "latency.samples" in ok.columns
    indices = grouped.indices if with_samples or (kept["units"] > 1).any() else {}
    if with_samples:  # plain lists, read by position: a frame row each is too slow
        lean = [
            {"latency.samples": s, "batch_size": b}
            for s, b in zip(ok["latency.samples"].tolist(), ok["batch_size"].tolist())
        ]
    ordered = [(kind, key) for (kind, key), _ in sorted(keys.items(), key=lambda item: item[1])]
    series: dict[int, list[Point]] = {}
    for key, run, value, _, per, units in kept.reset_index().itertuples(index=False):
        if units > 1:  # repeats measured with different blocks
            rows = ok.iloc[indices[(key, run)]]
            per = per_label(zip(rows["latency.per"], rows["latency.block_size"]))
        samples: tuple[tuple[float, ...], ...] = ()
        if with_samples:
            found = (compare.metric_samples(lean[i], metric) for i in indices[(key, run)])
            samples = tuple(tuple(s) for s in found if s)
        series.setdefault(int(key), []).append(Point(runs[int(run)], float(value), samples, per))
    return [
        Series(
            ordered[key][1],
            f"[{kind}] {ordered[key][1].label}" if kind else ordered[key][1].label,
            tuple(p),
        )
        for key, p in series.items()
        for kind in (ordered[key][0],)
    ]


def history(
    frame: pd.DataFrame,
    metric: str = "latency",
    threshold: float = compare.DEFAULT_THRESHOLD,
    order: str = "time",
) -> History:
    """Series and confirmed steps of every case of the runs in ``frame``."""
    if metric not in METRICS:
        raise HistoryError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    runs = order_runs(runs_of(frame), order)
    series = build_series(frame, runs, metric)
    return History(
        metric,
        threshold,
        order,
        tuple(runs),
        tuple(series),
        tuple(detect(series, metric, threshold)),
    )


def summary(history: History) -> dict[str, int]:
    return {
        "regressions": sum(s.verdict == "slower" for s in history.steps),
        "improvements": sum(s.verdict == "faster" for s in history.steps),
    }


def as_mapping(history: History) -> Mapping[str, Any]:
    """What ``harness history --json`` prints."""
    return {
        "metric": history.metric,
        "threshold": history.threshold,
        "order": history.order,
        "runs": [
            {
                "run_id": r.run_id,
                "file": r.file,
                "time": r.time,
                "commit": r.commit,
                "dirty": r.dirty,
                "hostname": r.hostname,
            }
            for r in history.runs
        ],
        "summary": summary(history),
        "cases": [
            {"case": s.label, "values": s.values, "runs": [p.run.run_id for p in s.points]}
            for s in history.series
        ],
        "steps": [s.to_dict() for s in history.steps],
    }
