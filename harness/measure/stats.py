"""Summary statistics of latency samples: the spread, not just a centre.

Benchmark timings are skewed (a floor set by the hardware, a tail of interference),
so the centre is the median and its uncertainty is a distribution-free confidence
interval from order statistics, which needs no normality assumption.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

# The heartbeat (timing.heartbeat; here, for analyses that load no torch): blocks of
# float32 128 x 128 matrix products, ~4 ms a block on one core
# of this VM (about 100 GFLOP/s), five blocks: ~25 ms, twice a case. Its operands
# (3 x 64 KiB) stay in the cache and are written in place, so it measures the
# machine's speed, not the allocator's or memory placement's.
HEARTBEAT_SIZE = 128
HEARTBEAT_PRODUCTS = 96  # per block
HEARTBEAT_BLOCKS = 5


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
    """Two-sided standard normal quantile (no scipy needed)."""
    return t_quantile(level, math.inf)


def t_quantile(level: float, df: float) -> float:
    """Two-sided quantile of Student's t with ``df`` degrees of freedom (``math.inf``: the
    normal): the t with P(|T| <= t) = ``level``, by bisection on :func:`t_tail`."""
    lo, hi = 0.0, 10.0
    while t_tail(hi, df) > 1 - level:
        lo, hi = hi, 2 * hi
    while hi - lo > 1e-12 * hi:
        mid = (lo + hi) / 2
        if t_tail(mid, df) > 1 - level:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def t_tail(t: float, df: float) -> float:
    """Two-sided tail P(|T| >= |t|) of Student's t with ``df`` (not necessarily whole)
    degrees of freedom; ``math.inf`` gives the normal's."""
    if math.isinf(df):
        return math.erfc(abs(t) / math.sqrt(2))
    return _regularised_beta(df / 2, 0.5, df / (df + t * t))


def _regularised_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), from its continued fraction
    (Numerical Recipes, 6.4), on the side of x where the fraction converges fast."""
    if x <= 0 or x >= 1:
        return float(x >= 1)
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1 - front * _beta_fraction(b, a, 1 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b), evaluated by the modified Lentz method."""
    tiny = 1e-300

    def guard(v: float) -> float:
        return v if abs(v) > tiny else tiny

    c, d = 1.0, 1 / guard(1 - (a + b) * x / (a + 1))
    result = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 / guard(1 + numerator * d)
            c = guard(1 + numerator / c)
            result *= c * d
        if abs(c * d - 1) < 1e-15:
            break
    return result


@dataclass(frozen=True)
class LatencyStats:
    """Statistics of per-iteration times in seconds, one sample per timed block.

    The median, its CI and the mean are times per call whatever the block size; the
    quartiles, ``p90``, ``p99``, ``min`` and ``max`` describe the samples: calls when
    each block is one call, else block means (see :func:`timed_per`).
    """

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
        return (
            f"LatencyStats(median={format_seconds(self.median)}, "
            f"IQR={format_seconds(self.iqr)}, "
            f"{self.ci_level:.0%} CI=[{format_seconds(self.ci_low)}, "
            f"{format_seconds(self.ci_high)}], n={self.n})"
        )


def timed_per(block_size: int) -> str:
    """What one sample is, and so what its percentiles describe: ``"call"`` when each
    block is one call, else ``"block"`` (a block's p99 is not a call's p99)."""
    return "call" if block_size == 1 else "block"


def _sample_unit(per: Any, block_size: Any) -> tuple[str | None, int | None]:
    """A record's ``latency.per`` and ``latency.block_size``, checked: files are not
    ours. Records from before ``per`` was written say it through their block size."""
    whole = (
        isinstance(block_size, numbers.Real)
        and not isinstance(block_size, bool)
        and math.isfinite(block_size)
        and block_size == int(block_size) >= 1
    )
    size = int(block_size) if whole else None  # a loaded frame's column may hold 16.0
    if per not in ("call", "block"):
        per = timed_per(size) if size else None
    return per, size if per == "block" else 1 if per == "call" else None


def per_label(units: Iterable[tuple[Any, Any]]) -> str:
    """How to name percentiles of samples from records with these ``(per, block_size)``:
    "per call", "per block of 16", "per block of 12-16", "per call or block"."""
    known = {_sample_unit(per, size) for per, size in units}
    kinds = {per for per, _ in known}
    if kinds == {"call"}:
        return "per call"
    if kinds != {"block"}:
        return "per call or block"
    sizes = sorted(size for _, size in known if size is not None)
    if len(sizes) < len(known):  # a block of unknown size
        return "per block"
    return f"per block of {sizes[0]}" + (f"-{sizes[-1]}" if sizes[-1] != sizes[0] else "")


def format_seconds(seconds: float) -> str:
    """Human units for a duration: 812 ns, 3.41 ms, 1.20 s."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_count(n: int | None) -> str:
    """3576704 -> 3.58M; the exact figure is in ``--json``."""
    if n is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def format_rate(per_second: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if per_second >= scale:
            return f"{per_second / scale:.3g}{unit}/s"
    return f"{per_second:.3g}/s"


def format_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"
