"""How sure a change is: estimates of a ratio between two sets of timings, with an
interval, a p-value and the smallest change they could have seen.

Timings are skewed and heavy-tailed, so the tests are distribution-free. Pooled samples:
the Hodges-Lehmann estimator of the shift between log-times (the median of all pairwise
log-ratios, so a ratio), its 95 % interval from the Mann-Whitney distribution and its
p-value from the Mann-Whitney U test. Across many cases the p-values are adjusted by
Benjamini-Hochberg, so a suite of 100 unchanged cases does not yield five false alarms
at 5 %.

Fresh processes (``harness run --repeats``): the unit of evidence is the process, not
the sample: a process can land slow as a whole (memory placement, a busy sibling core),
and samples within it cannot show that. The ratio is that of the lower quartiles of the
per-process medians, with a bootstrap over processes. The lower quartile because
interference on a shared machine only ever adds time: the faster processes are the less
disturbed, and a quartile still cannot be set by one odd process.

Turns of one interleaved pair (``harness ab``): each turn of the candidate is paired
with the baseline's turn beside it, and the ratio is the Hodges-Lehmann estimate of the
per-turn log-ratios of medians with the Wilcoxon signed-rank interval and p-value, so
the machine's drift cancels. Independent pairs of a session are judged by the confidence
sequence of :mod:`harness.analysis.sequential`.

One process a side (separate runs): the samples cannot see how the machine's speed
differs between the two runs, so the interval of their shift is widened by each run's
machine noise (:mod:`harness.analysis.noise`), a placement floor per process and the runs' shift
of the whole machine, with Student's t and Satterthwaite's degrees of freedom. A run
without enough heartbeats leaves such a case ``inconclusive``, saying why.

A change must be both significant and at least ``threshold`` to count: a tiny but
"significant" change is not what anyone gates a merge on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.analysis import sequential
from harness.measure.stats import t_quantile, t_tail, z_quantile

if TYPE_CHECKING:  # noise imports this module's MIN_REPEATS
    from harness.analysis.noise import MachineNoise

ALPHA = 0.05

POWER = 0.8

MIN_REPEATS = 5  # per side; with fewer the bootstrap over processes under-covers

BOOTSTRAP_RESAMPLES = 4000

PROCESS_QUANTILE = 0.25  # of per-process medians: see the module docstring

# Fresh processes of identical code differ as a whole even on a quiet machine (memory
# placement, the vCPU they mostly run on), which a heartbeat timed in the same process
# need not see: on this VM a process lands 5-30 % slow about one time in five, a per-
# process sd of sqrt(0.2 * E[U(0.05, 0.3)^2]) = 8.5 %. scripts/validate_runs.py met one
# (a gan case 30 % slow, its heartbeats normal); a 1 % floor let 3 of 200 A/A
# comparisons cry wolf, 3 % let 2 of another 200.
PLACEMENT_SD = 0.085

_Z_ALPHA = z_quantile(1 - ALPHA)  # two-sided

_Z_POWER = z_quantile(2 * POWER - 1)  # one-sided quantile at POWER

# A run whose median CI half-width is p (relative) compared with a like run can detect
# about this multiple of p: the two standard errors add in quadrature.
MDE_PER_PRECISION = (_Z_ALPHA + _Z_POWER) * math.sqrt(2) / _Z_ALPHA

VERDICTS = ("slower", "faster", "no change", "inconclusive")

# The unit of evidence of an estimate: pooled samples, the pooled samples of separate
# runs widened by their machine noise (one process a side), fresh processes (--repeats),
# the turns of one interleaved pair (harness ab before pairs), or independent pairs
# judged by a confidence sequence (harness ab).
METHODS = ("samples", "runs", "processes", "turns", "pairs")


@dataclass(frozen=True)
class ShiftEstimate:
    """Candidate over baseline as a ratio, with its 95 % interval and p-value."""

    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    mde: float  # smallest relative change these samples detect with 80 % power
    method: str = "samples"  # what the evidence is: see METHODS
    within: ShiftEstimate | None = None  # the samples' own, where run noise widened it

    def __repr__(self) -> str:
        return (
            f"ShiftEstimate(ratio={self.ratio:.4f}, ci=[{self.ci_low:.4f}, "
            f"{self.ci_high:.4f}], p={self.p_value:.3g}, mde={self.mde:.2%}, "
            f"{self.method})"
        )


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def shift(baseline: Sequence[float], candidate: Sequence[float]) -> ShiftEstimate:
    """Hodges-Lehmann ratio of ``candidate`` to ``baseline`` samples, with Mann-Whitney
    interval and p-value (normal approximation with tie correction)."""
    x = np.log(np.asarray(baseline, dtype=float))
    y = np.log(np.asarray(candidate, dtype=float))
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError("a shift needs at least two samples on each side")
    diffs = np.sort((y[:, None] - x[None, :]).ravel())
    estimate = float(np.median(diffs))
    # Mann-Whitney U of y over x, ties counted half, and its null variance with ties.
    ranks = pd.Series(np.concatenate([x, y])).rank().to_numpy()
    u = ranks[n:].sum() - m * (m + 1) / 2
    _, counts = np.unique(np.concatenate([x, y]), return_counts=True)
    tie = (counts**3 - counts).sum() / ((n + m) * (n + m - 1))
    sd = math.sqrt(n * m / 12 * ((n + m + 1) - tie))
    z = (abs(u - n * m / 2) - 0.5) / sd if sd else 0.0
    p_value = min(1.0, 2 * _normal_sf(max(z, 0.0)))
    # The interval's ends are order statistics of the pairwise differences.
    k = round(n * m / 2 - _Z_ALPHA * sd) - 1  # the 1-based rank, made 0-based
    k = min(max(k, 0), (n * m - 1) // 2)
    return _estimate(estimate, float(diffs[k]), float(diffs[n * m - 1 - k]), p_value)


def _estimate(
    log_ratio: float,
    low: float,
    high: float,
    p_value: float,
    method: str = "samples",
    within: ShiftEstimate | None = None,
) -> ShiftEstimate:
    se = (high - low) / (2 * _Z_ALPHA)
    return ShiftEstimate(
        math.exp(log_ratio),
        math.exp(low),
        math.exp(high),
        p_value,
        math.expm1((_Z_ALPHA + _Z_POWER) * se),
        method,
        within,
    )


def shift_of_repeats(
    baseline: Sequence[Sequence[float]],
    candidate: Sequence[Sequence[float]],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> ShiftEstimate:
    """Ratio of the lower quartiles of per-process medians, bootstrapped over processes."""
    a = np.log([np.median(r) for r in baseline])
    b = np.log([np.median(r) for r in candidate])
    if len(a) < 2 or len(b) < 2:
        raise ValueError("a shift of repeats needs at least two processes on each side")
    rng = np.random.default_rng(seed)

    def level(x: np.ndarray) -> np.ndarray:
        return np.quantile(x, PROCESS_QUANTILE, axis=-1)

    boot = level(b[rng.integers(0, len(b), (resamples, len(b)))]) - level(
        a[rng.integers(0, len(a), (resamples, len(a)))]
    )
    low, high = np.quantile(boot, [ALPHA / 2, 1 - ALPHA / 2])
    tail = min((boot <= 0).sum(), (boot >= 0).sum())
    p_value = min(1.0, 2 * (tail + 1) / (resamples + 1))
    return _estimate(float(level(b) - level(a)), float(low), float(high), p_value, "processes")


def shift_of_turns(
    baseline: Sequence[Sequence[float]], candidate: Sequence[Sequence[float]]
) -> ShiftEstimate:
    """Samples of an interleaved session (``harness ab``) grouped by turn: the
    Hodges-Lehmann estimate of the per-turn log-ratios of medians, with the Wilcoxon
    signed-rank interval and p-value (normal approximation with tie correction)."""
    if len(baseline) != len(candidate) or len(baseline) < 2:
        raise ValueError("a shift of turns needs the same number (at least two) of turns")
    d = np.log([np.median(t) for t in candidate]) - np.log([np.median(t) for t in baseline])
    n = len(d)
    upper = np.triu_indices(n)
    walsh = np.sort(((d[:, None] + d[None, :]) / 2)[upper])
    nonzero = d[d != 0]
    ranks = pd.Series(np.abs(nonzero)).rank().to_numpy()
    m = len(nonzero)
    _, counts = np.unique(np.abs(nonzero), return_counts=True)
    sd = math.sqrt(m * (m + 1) * (2 * m + 1) / 24 - (counts**3 - counts).sum() / 48)
    w_plus = ranks[nonzero > 0].sum()
    z = (abs(w_plus - m * (m + 1) / 4) - 0.5) / sd if sd else 0.0
    p_value = min(1.0, 2 * _normal_sf(max(z, 0.0)))
    k = round(len(walsh) / 2 - _Z_ALPHA * math.sqrt(n * (n + 1) * (2 * n + 1) / 24)) - 1
    k = min(max(k, 0), (len(walsh) - 1) // 2)
    return _estimate(
        float(np.median(walsh)), float(walsh[k]), float(walsh[len(walsh) - 1 - k]), p_value, "turns"
    )


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Adjusted p-values (q-values) controlling the false discovery rate."""
    count = len(p_values)
    order = sorted(range(count), key=lambda i: p_values[i])
    adjusted = [0.0] * count
    running = 1.0
    for rank in range(count, 0, -1):
        i = order[rank - 1]
        running = min(running, p_values[i] * count / rank)
        adjusted[i] = running
    return adjusted


def verdict(
    ratio: float, ci: tuple[float, float], significant: bool, threshold: float, worse_above: bool
) -> str:
    """``slower``/``faster`` when significant and at least ``threshold``; ``no change``
    when the interval rules out a change of ``threshold``; else ``inconclusive``.

    ``ratio`` is candidate over baseline of the metric; ``worse_above`` says whether a
    larger value is worse (latency, memory) or better (throughput).
    """
    bound = 1 + threshold
    if significant and (ratio >= bound or ratio <= 1 / bound):
        return "slower" if (ratio > 1) == worse_above else "faster"
    if 1 / bound < ci[0] and ci[1] < bound:
        return "no change"
    return "inconclusive"


def shift_of_pairs(
    pairs: Sequence[tuple[list[list[float]], list[list[float]]]], alpha: float = sequential.ALPHA
) -> ShiftEstimate:
    """Independent pairs of an ab session, in the order they were measured: each one's
    Hodges-Lehmann ratio over its turns, judged by the confidence sequence that decided
    when the session stopped (its p-value is valid under those repeated looks)."""
    look = sequential.look([math.log(shift_of_turns(*p).ratio) for p in pairs], alpha)
    low, high = look.interval
    se = (look.high - look.low) / (2 * _Z_ALPHA)
    return ShiftEstimate(
        look.ratio, low, high, look.p_value, math.expm1((_Z_ALPHA + _Z_POWER) * se), "pairs"
    )


def repeated(xs: Sequence[Sequence[float]], ys: Sequence[Sequence[float]]) -> bool:
    """Whether both sides have enough processes for the bootstrap over processes."""
    return len(xs) >= MIN_REPEATS and len(ys) >= MIN_REPEATS


def shift_of_processes(
    xs: Sequence[Sequence[float]], ys: Sequence[Sequence[float]]
) -> ShiftEstimate:
    """Samples grouped by process: a bootstrap over processes when both sides have
    enough of them, else the shift of the pooled samples."""
    if repeated(xs, ys):
        return shift_of_repeats(xs, ys)
    return shift([v for s in xs for v in s], [v for s in ys for v in s])


@dataclass(frozen=True)
class Unjudged:
    """Why a case has no interval although it has samples."""

    reason: str


def shift_of_runs(
    xs: Sequence[Sequence[float]],
    ys: Sequence[Sequence[float]],
    base: MachineNoise,
    cand: MachineNoise,
    level: float = 0.0,
) -> ShiftEstimate | Unjudged:
    """The pooled samples' shift, its variance widened by each side's machine noise
    (``MachineNoise.of_case``), the placement floor per process and the square of the
    runs' machine shift ``level`` (``machine_shift``), with a t interval and p-value
    (Satterthwaite's degrees of freedom: all but the noise count as exact)."""
    for side, noise in (("baseline", base), ("candidate", cand)):
        if noise.sd is None:
            return Unjudged(noise.why_unknown(side))
    within = shift([v for s in xs for v in s], [v for s in ys for v in s])
    samples = ((math.log(within.ci_high) - math.log(within.ci_low)) / (2 * _Z_ALPHA)) ** 2
    placement = PLACEMENT_SD**2 * (1 / len(xs) + 1 / len(ys))
    runs = [
        (noise.sd**2 / len(processes), noise.df) for noise, processes in ((base, xs), (cand, ys))
    ]
    variance = samples + placement + level**2 + sum(v for v, _ in runs)
    uncertain = sum(v**2 / df for v, df in runs)
    df = variance**2 / uncertain if uncertain else math.inf
    se, log_ratio = math.sqrt(variance), math.log(within.ratio)
    half = t_quantile(1 - ALPHA, df) * se
    return _estimate(
        log_ratio, log_ratio - half, log_ratio + half, t_tail(log_ratio / se, df), "runs", within
    )


def judge(
    est: ShiftEstimate, threshold: float, worse_above: bool, p_value: float | None = None
) -> str:
    """The verdict of an estimate on ``p_value`` (an adjusted one), else on its own."""
    p = est.p_value if p_value is None else p_value
    return verdict(est.ratio, (est.ci_low, est.ci_high), p <= ALPHA, threshold, worse_above)
