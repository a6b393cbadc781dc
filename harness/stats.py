"""Summary statistics of latency samples: the spread, not just a centre.

Benchmark timings are skewed (a floor set by the hardware, a tail of interference),
so the centre is the median and its uncertainty is a distribution-free confidence
interval from order statistics, which needs no normality assumption.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

CI_LEVEL = 0.95
_EXACT_BINOMIAL_LIMIT = 1000


def quantile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of sorted data (numpy's default method)."""
    if not ordered:
        raise ValueError("quantile of no data")
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median_ci_ranks(n: int, level: float = CI_LEVEL) -> tuple[int, int]:
    """0-based ranks (k, n - 1 - k) of the order statistics bounding the median's CI.

    The count X of samples below the true median is Binomial(n, 1/2), so the interval
    [x_(k), x_(n-1-k)] misses the median with probability 2 P(X <= k); the largest k
    keeping that within 1 - ``level`` is chosen (n = 10 gives ranks 1 and 8, the
    textbook x_(2)..x_(9)). Below six samples no k qualifies and the interval is the
    full range, whose coverage 1 - 2^(1-n) is then less than ``level``.
    """
    alpha = (1 - level) / 2
    if n > _EXACT_BINOMIAL_LIMIT:
        k = math.floor(n / 2 - 0.5 * z_quantile(level) * math.sqrt(n)) - 1
        return max(k, 0), n - 1 - max(k, 0)
    total = 2**n
    cumulative = 0
    k = -1
    while k + 1 < n // 2:
        cumulative += math.comb(n, k + 1)
        if cumulative / total > alpha:
            break
        k += 1
    k = max(k, 0)
    return k, n - 1 - k


def z_quantile(level: float) -> float:
    """Two-sided standard normal quantile via bisection on erf (no scipy needed)."""
    target = level
    lo, hi = 0.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if math.erf(mid / math.sqrt(2)) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass(frozen=True)
class LatencyStats:
    """Statistics of per-iteration times in seconds, one sample per timed block."""

    n: int
    median: float
    mean: float
    min: float
    max: float
    q25: float
    q75: float
    p90: float
    p99: float
    ci_low: float
    ci_high: float
    ci_level: float = CI_LEVEL

    @classmethod
    def from_samples(cls, samples: Sequence[float]) -> LatencyStats:
        ordered = sorted(samples)
        lo, hi = median_ci_ranks(len(ordered))
        return cls(
            n=len(ordered),
            median=quantile(ordered, 0.5),
            mean=math.fsum(ordered) / len(ordered),
            min=ordered[0],
            max=ordered[-1],
            q25=quantile(ordered, 0.25),
            q75=quantile(ordered, 0.75),
            p90=quantile(ordered, 0.90),
            p99=quantile(ordered, 0.99),
            ci_low=ordered[lo],
            ci_high=ordered[hi],
        )

    @property
    def iqr(self) -> float:
        return self.q75 - self.q25

    @property
    def relative_ci_halfwidth(self) -> float:
        """Half the CI's width relative to the median: the precision reached."""
        return (self.ci_high - self.ci_low) / (2 * self.median) if self.median else math.inf

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "iqr": self.iqr}

    def __repr__(self) -> str:
        return (f"LatencyStats(median={format_seconds(self.median)}, "
                f"IQR={format_seconds(self.iqr)}, "
                f"{self.ci_level:.0%} CI=[{format_seconds(self.ci_low)}, "
                f"{format_seconds(self.ci_high)}], n={self.n})")


def format_seconds(seconds: float) -> str:
    """Human units for a duration: 812 ns, 3.41 ms, 1.20 s."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"
