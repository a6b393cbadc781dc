"""Change points over a series of runs: when did a case get slower or faster, and by how much.

Each case becomes a series with one point per run (its median and raw samples), in
time or commit order. A step must be both a lasting change of level and a significant
change of the samples, so it is found in two stages:

1. Segmentation of the log-medians into stretches of constant level: the exact optimum
   of least squares plus ``PENALTY * log(n)`` per change point, by dynamic programming
   over every segmentation (the optimum PELT finds). Costs are in units of the
   series' own run-to-run noise, estimated robustly from the differences of
   consecutive points, so a noisy case needs a larger step than a quiet one. Points
   further than ``CLIP`` noise units from a running median are first pulled in to that
   distance, so one run in a slow spell of a shared machine cannot open a segment,
   and a segment needs at least two runs: one run alone cannot be told from a one-off
   slow run (``harness compare`` judges a single run).
2. Confirmation of each boundary by ``compare.shift_of_processes`` on the raw samples of
   up to ``NEIGHBOURS`` runs either side (the Hodges-Lehmann ratio with Mann-Whitney
   interval and p-value, or with ``--repeats`` a bootstrap over the processes), then
   ``compare.verdict`` with the threshold. Boundaries that fail are
   dropped and the others judged again against the merged segments. The p-values of
   the survivors are adjusted by Benjamini-Hochberg across all cases.

asv (``asv.step_detect``) fits a piecewise-constant model to the medians alone; it
never sees the samples. ``scripts/validate_history.py`` compares the two.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from harness import compare
from harness.errors import HistoryError

METRICS = ("latency", "throughput")
ORDERS = ("time", "commit")
PENALTY = 3.0  # per change point, times log(n), in squared noise units (BIC uses 2)
CLIP = 3.0  # noise units from the running median beyond which a point is pulled in
MIN_SEGMENT = 2  # runs
NEIGHBOURS = 3  # runs each side whose samples judge a boundary
NOISE_FLOOR = 1e-3  # relative: keeps a noiseless series from splitting at rounding
STEP_VERDICTS = ("slower", "faster")  # a regression, an improvement


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

    @property
    def pooled(self) -> list[float]:
        return [v for repeat in self.samples for v in repeat]


@dataclass(frozen=True)
class Series:
    key: tuple[Any, ...]
    label: str
    points: tuple[Point, ...]

    @property
    def values(self) -> list[float]:
        return [p.value for p in self.points]


@dataclass(frozen=True)
class Step:
    """A confirmed change of level: ``index`` is the first point at the new level."""

    case: str
    key: tuple[Any, ...]
    index: int
    run: Run
    previous: Run
    before: float  # median of the points of the segment before, in the metric's units
    after: float
    ratio: float  # after over before, judged on the samples near the step as compare does
    ci_low: float
    ci_high: float
    p_value: float
    q_value: float
    verdict: str  # "slower" (a regression) or "faster" (an improvement)

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case, "index": self.index, "run_id": self.run.run_id,
                "commit": self.run.commit, "time": self.run.time,
                "previous_run_id": self.previous.run_id, "previous_commit": self.previous.commit,
                "before": self.before, "after": self.after, "ratio": self.ratio,
                "ci_low": self.ci_low, "ci_high": self.ci_high, "p_value": self.p_value,
                "q_value": self.q_value, "verdict": self.verdict}


@dataclass(frozen=True)
class History:
    metric: str
    threshold: float
    order: str
    runs: tuple[Run, ...]
    series: tuple[Series, ...]
    steps: tuple[Step, ...]

    def steps_of(self, key: tuple[Any, ...]) -> list[Step]:
        return [s for s in self.steps if s.key == key]


# ---- segmentation -------------------------------------------------------------------


def noise_scale(log_values: Sequence[float]) -> float:
    """Run-to-run standard deviation from the median absolute consecutive difference.

    A step moves one difference and an outlier two, so the median ignores both.
    """
    diffs = np.abs(np.diff(np.asarray(log_values, dtype=float)))
    if len(diffs) < 2:
        return NOISE_FLOOR
    return max(1.4826 * float(np.median(diffs)) / math.sqrt(2), NOISE_FLOOR)


def _running_median(y: np.ndarray, half: int = 2) -> np.ndarray:
    return np.array([np.median(y[max(0, i - half):i + half + 1]) for i in range(len(y))])


def segment(y: Sequence[float], penalty: float, min_size: int = MIN_SEGMENT) -> list[int]:
    """Start indices of the segments after the first in the least-squares optimal
    piecewise-constant fit of ``y`` with ``penalty`` per change (exact, O(n^2))."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    if n < 2 * min_size:
        return []
    s1 = np.concatenate([[0.0], np.cumsum(y)])
    s2 = np.concatenate([[0.0], np.cumsum(y * y)])
    best = np.full(n + 1, math.inf)
    best[0] = -penalty
    start_of = np.zeros(n + 1, dtype=int)
    for end in range(min_size, n + 1):
        starts = np.arange(0, end - min_size + 1)
        length = end - starts
        cost = (s2[end] - s2[starts]) - (s1[end] - s1[starts]) ** 2 / length
        total = best[starts] + cost + penalty
        i = int(np.argmin(total))
        best[end], start_of[end] = total[i], starts[i]
    cuts, end = [], n
    while end > 0:
        end = int(start_of[end])
        if end > 0:
            cuts.append(end)
    return sorted(cuts)


def _standardised(values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Log-values in noise units, pulled in to ``CLIP`` of a running median, and which
    points needed it (outliers: runs in a slow spell)."""
    y = np.log(np.asarray(values, dtype=float))
    z = y / noise_scale(y)
    centre = _running_median(z)
    outliers = np.abs(z - centre) > CLIP
    return centre + np.clip(z - centre, -CLIP, CLIP), outliers


def levels(values: Sequence[float], cuts: Sequence[int]) -> list[tuple[int, int, float]]:
    """``(start, stop, median)`` of each segment between ``cuts``."""
    bounds = [0, *cuts, len(values)]
    return [(a, b, float(np.median(values[a:b]))) for a, b in zip(bounds, bounds[1:])]


# ---- confirmation -------------------------------------------------------------------


def _judge(points: Sequence[Point], cuts: Sequence[int], outliers: Sequence[bool]
           ) -> list[compare.ShiftEstimate | None]:
    """Each boundary's shift between the samples of up to ``NEIGHBOURS`` runs either side
    (within the segments, outlier runs left out); None when one side has no run left."""
    bounds = [0, *cuts, len(points)]
    estimates = []
    for lo, cut, hi in zip(bounds, bounds[1:], bounds[2:]):
        windows = ((max(lo, cut - NEIGHBOURS), cut), (cut, min(hi, cut + NEIGHBOURS)))
        sides = [[r for i in range(a, b) if not outliers[i] for r in points[i].samples]
                 for a, b in windows]
        estimates.append(compare.shift_of_processes(*sides) if all(sides) else None)
    return estimates


def _confirmed(points: Sequence[Point], threshold: float, worse_above: bool
               ) -> list[tuple[int, compare.ShiftEstimate]]:
    if len(points) < 2 * MIN_SEGMENT:
        return []
    z, outliers = _standardised([p.value for p in points])
    cuts = segment(z, PENALTY * math.log(len(z)))
    while True:
        judged = list(zip(cuts, _judge(points, cuts, outliers)))
        kept = [(cut, est) for cut, est in judged if est is not None
                and compare.judge(est, threshold, worse_above) in STEP_VERDICTS]
        if len(kept) == len(cuts):
            return kept
        cuts = [cut for cut, _ in kept]


def detect(series: Sequence[Series], metric: str = "latency",
           threshold: float = compare.DEFAULT_THRESHOLD) -> list[Step]:
    """Confirmed steps of every series, with q-values across all of them."""
    worse_above = metric != "throughput"
    found = [(s, cut, est) for s in series for cut, est in _confirmed(s.points, threshold,
                                                                       worse_above)]
    q_values = compare.benjamini_hochberg([est.p_value for _, _, est in found])
    judged = [(s, cut, est, q, compare.judge(est, threshold, worse_above, q))
              for (s, cut, est), q in zip(found, q_values)]
    steps = []
    for s in series:
        mine = [(cut, est, q, v) for t, cut, est, q, v in judged
                if t is s and v in STEP_VERDICTS]
        segments = levels(s.values, [cut for cut, *_ in mine])
        for at, (cut, est, q, verdict) in enumerate(mine):
            steps.append(Step(s.label, s.key, cut, s.points[cut].run, s.points[cut - 1].run,
                              segments[at][2], segments[at + 1][2], est.ratio, est.ci_low,
                              est.ci_high, est.p_value, q, verdict))
    return steps


# ---- runs and series from results ---------------------------------------------------


def runs_of(frame: pd.DataFrame) -> list[Run]:
    """Each run of a results frame once, in the frame's order."""
    columns = ["file", "run_id", "env.time", "env.git.commit", "env.git.dirty", "env.hostname"]
    heads = frame.reindex(columns=columns).drop_duplicates(["file", "run_id"])
    return [Run(str(r["file"]), str(r["run_id"]), *(None if pd.isna(r[c]) else r[c]
                                                   for c in columns[2:]))
            for r in heads.to_dict("records")]


def _when(run: Run) -> datetime:
    if not run.time:
        raise HistoryError(f"run {run.run_id} in {run.file} records no time; order by "
                           "--order commit instead")
    try:
        when = datetime.fromisoformat(run.time)
    except ValueError:
        raise HistoryError(f"run {run.run_id} in {run.file} has an unreadable time "
                           f"{run.time!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _commit_positions() -> dict[str, int]:
    """Oldest-first position of every commit of the repository in the current directory."""
    hint = ("--order commit takes the order from the git repository in the current "
            "directory; run it there, or use --order time")
    try:
        out = subprocess.run(["git", "rev-list", "--topo-order", "--reverse", "--all"],
                             capture_output=True, text=True, timeout=60)
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
        raise HistoryError(f"runs {', '.join(missing[:3])} record no git commit; "
                           "use --order time")
    positions = _commit_positions()
    unknown = sorted({r.commit[:10] for r in runs if r.commit not in positions})
    if unknown:
        raise HistoryError(f"commits {', '.join(unknown[:3])} are not in the git repository "
                           "in the current directory; run from the repository the runs "
                           "measured, or use --order time")
    return sorted(by_time, key=lambda r: positions[r.commit])


def build_series(frame: pd.DataFrame, runs: Sequence[Run], metric: str = "latency"
                 ) -> list[Series]:
    """One series per case, one point per run in ``runs`` order that has it (status ok);
    a point pools the run's repeats of the case."""
    by_run = {key: group for key, group in frame.groupby(["file", "run_id"], sort=False)}
    points: dict[tuple[Any, ...], list[Point]] = {}
    for run in runs:
        for key, rows in compare.latest_cases(by_run[run.key]).items():
            samples = [s for s in (compare.metric_samples(r, metric) for r in rows) if s]
            value = compare.metric_value(rows, metric)
            if samples and value:
                points.setdefault(key, []).append(
                    Point(run, value, tuple(tuple(s) for s in samples)))
    return [Series(key, compare.case_label(key), tuple(p)) for key, p in points.items()]


def history(frame: pd.DataFrame, metric: str = "latency",
            threshold: float = compare.DEFAULT_THRESHOLD, order: str = "time") -> History:
    """Series and confirmed steps of every case of the runs in ``frame``."""
    if metric not in METRICS:
        raise HistoryError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    runs = order_runs(runs_of(frame), order)
    series = build_series(frame, runs, metric)
    return History(metric, threshold, order, tuple(runs), tuple(series),
                   tuple(detect(series, metric, threshold)))


def summary(history: History) -> dict[str, int]:
    return {"regressions": sum(s.verdict == "slower" for s in history.steps),
            "improvements": sum(s.verdict == "faster" for s in history.steps)}


def as_mapping(history: History) -> Mapping[str, Any]:
    """What ``harness history --json`` prints."""
    return {"metric": history.metric, "threshold": history.threshold, "order": history.order,
            "runs": [{"run_id": r.run_id, "file": r.file, "time": r.time, "commit": r.commit,
                      "dirty": r.dirty, "hostname": r.hostname} for r in history.runs],
            "summary": summary(history),
            "cases": [{"case": s.label, "values": s.values,
                       "runs": [p.run.run_id for p in s.points]} for s in history.series],
            "steps": [s.to_dict() for s in history.steps]}
