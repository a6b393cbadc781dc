"""When to stop timing a case: an interval that stays valid however often it is looked at.

``harness ab`` measures a case as a series of independently started pairs of processes
(baseline and candidate timed turn about), because two fresh processes of identical code
can differ by a percent or two as a whole, which turns inside one pair cannot see. Each
pair yields one log-ratio; their spread includes that between-process variance.

It looks after every pair and stops once the verdict is settled. A fixed-sample t-interval
checked after every pair would cry wolf far more often than its level says, so the
interval here is a *confidence sequence*: with probability at least ``1 - alpha`` it holds
the true log-ratio at every look at once. It is Lai's (1976) t-confidence sequence, as
Wang & Ramdas (2023, "Anytime-valid t-tests and confidence sequences for Gaussian means
with unknown variance") treat it: the Bayes factor of the scale-invariant t-likelihood
with a normal mixture over the standardised effect (the JZS Bayes factor with fixed g) is a
nonnegative martingale under the null in the scale-invariant filtration, so by Ville's
inequality it exceeds ``1/alpha`` with probability at most ``alpha`` ever. A mixture of two
prior scales (an average of martingales is one) lets a large regression stop after three
pairs while a change of a couple of standard deviations per pair is still found in ten.

Verdicts, with ``threshold`` the smallest change that matters (an indifference zone):

* ``no change``: the sequence lies inside (1/(1+threshold), 1+threshold);
* ``slower``/``faster``: the sequence excludes a ratio of 1 (anytime p <= alpha);
* ``inconclusive``: neither, when the time runs out.

A change smaller than the threshold may end either ``no change`` or, if it is real and
the time long, ``slower``; a change at least the threshold is ``no change`` with
probability at most ``alpha``; an unchanged case is ``slower`` or ``faster`` with
probability at most ``alpha`` however many looks were taken.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

ALPHA = 0.02  # over all looks of one case; a false alarm costs someone an afternoon
PRIOR_SCALES = (2.0, 100.0)  # variances of the standardised effect per pair, mixed equally
MIN_PAIRS = 3  # below this no mixture of these scales can reach 1/alpha


def bayes_factor(
    log_ratios: Sequence[float], null: float = 0.0, scales: Sequence[float] = PRIOR_SCALES
) -> float:
    """Evidence against "the mean log-ratio is ``null``" after these pairs (>= 2)."""
    n = len(log_ratios)
    if n < 2:
        return 1.0
    mean = math.fsum(log_ratios) / n
    var = math.fsum((x - mean) ** 2 for x in log_ratios) / (n - 1)
    if var == 0:
        return math.inf if mean != null else 1.0
    return _mixture(n * (mean - null) ** 2 / var, n, scales)


def _mixture(t2: float, n: int, scales: Sequence[float]) -> float:
    """The mixed Bayes factor at a squared t-statistic ``t2`` with ``n`` pairs."""
    nu = n - 1
    total = 0.0
    for g in scales:
        c = 1 + n * g
        total += c**-0.5 * ((1 + t2 / nu) / (1 + t2 / (c * nu))) ** ((nu + 1) / 2)
    return total / len(scales)


@functools.lru_cache(maxsize=1024)
def _critical_t(n: int, alpha: float, scales: tuple[float, ...]) -> float:
    """The |t| at which the Bayes factor reaches 1/alpha; infinite while it cannot."""
    if n < 2 or _limit(n, scales) <= 1 / alpha:
        return math.inf
    low, high = 0.0, 1.0
    while _mixture(high, n, scales) < 1 / alpha:
        high *= 2
    for _ in range(100):  # bisection on t^2: the factor increases with it
        mid = (low + high) / 2
        low, high = (mid, high) if _mixture(mid, n, scales) < 1 / alpha else (low, mid)
    return math.sqrt(high)


def _limit(n: int, scales: Sequence[float]) -> float:
    """The Bayes factor as t grows without bound: (1 + n g)^((n-1)/2), mixed."""
    return sum((1 + n * g) ** ((n - 1) / 2) for g in scales) / len(scales)


@dataclass(frozen=True)
class Look:
    """What the pairs so far say: the mean log-ratio, the confidence sequence's bounds at
    this look (infinite until it closes), and the anytime-valid p-value of "no change"
    (the smallest over all looks so far, so it never rises)."""

    pairs: int
    log_ratio: float
    low: float
    high: float
    p_value: float

    @property
    def ratio(self) -> float:
        return math.exp(self.log_ratio)

    @property
    def interval(self) -> tuple[float, float]:
        return _exp(self.low), _exp(self.high)

    def settled(self, threshold: float, alpha: float = ALPHA, cases: int = 1) -> str | None:
        """The verdict once settled (latency-like: above 1 is slower), else None.

        With ``cases`` cases judged together, ``slower``/``faster`` needs p <= alpha/cases:
        then its Benjamini-Hochberg q-value is at most alpha whatever the other cases
        show, so no later case can overturn a verdict at which this one stopped.
        """
        found = verdict(self.ratio, *self.interval, self.p_value * cases, threshold, alpha)
        return None if found == "inconclusive" else found

    def __repr__(self) -> str:
        low, high = self.interval
        return (
            f"Look(pairs={self.pairs}, ratio={self.ratio:.4f}, cs=[{low:.4f}, {high:.4f}], "
            f"p={self.p_value:.3g})"
        )


def verdict(
    ratio: float,
    low: float | None,
    high: float | None,
    p_value: float,
    threshold: float,
    alpha: float = ALPHA,
    worse_above: bool = True,
) -> str:
    """``no change`` when the sequence lies within the threshold both ways; else
    ``slower``/``faster`` when ``p_value`` (a q-value across cases) is at most ``alpha``;
    else ``inconclusive``. ``low``/``high`` bound the ratio (None: not yet bounded);
    ``worse_above`` says whether a larger ratio is worse (latency) or better (throughput)."""
    bound = 1 + threshold
    if low is not None and high is not None and 1 / bound < low and high < bound:
        return "no change"
    if p_value <= alpha:
        return "slower" if (ratio > 1) == worse_above else "faster"
    return "inconclusive"


def _exp(x: float) -> float:
    return math.inf if x == math.inf else 0.0 if x == -math.inf else math.exp(x)


def looks(
    log_ratios: Sequence[float], alpha: float = ALPHA, scales: Sequence[float] = PRIOR_SCALES
) -> Iterator[Look]:
    """The state after each pair of ``log_ratios`` in turn (in the order measured)."""
    scales = tuple(scales)
    evidence = 1.0
    for n in range(1, len(log_ratios) + 1):
        seen = log_ratios[:n]
        mean = math.fsum(seen) / n
        evidence = max(evidence, bayes_factor(seen, 0.0, scales))
        half = math.inf
        if n >= 2:
            sd = math.sqrt(math.fsum((x - mean) ** 2 for x in seen) / (n - 1))
            critical = _critical_t(n, alpha, scales)
            half = critical * sd / math.sqrt(n) if sd or critical == math.inf else 0.0
        yield Look(n, mean, mean - half, mean + half, min(1.0, 1 / evidence))


def look(
    log_ratios: Sequence[float], alpha: float = ALPHA, scales: Sequence[float] = PRIOR_SCALES
) -> Look:
    """The state after all the pairs ``log_ratios``."""
    if not log_ratios:
        raise ValueError("a look needs at least one pair")
    *_, last = looks(log_ratios, alpha, scales)
    return last


MIN_ROUNDS = 2  # a bisection step's fewest rounds: one odd pair of processes never decides
MARGIN = 0.5  # a step assumes only this fraction of the estimated gap: see :func:`nearer`


def pooled_sd(groups: Sequence[Sequence[float]]) -> tuple[float, int]:
    """The standard deviation within groups (each around its own mean) and its degrees of
    freedom: the spread of one pair's log-ratio, whatever the pairs compared."""
    squares = math.fsum(
        math.fsum((x - math.fsum(g) / len(g)) ** 2 for x in g) for g in groups if len(g) > 1
    )
    df = sum(len(g) - 1 for g in groups if len(g) > 1)
    return (math.sqrt(squares / df) if df else math.nan), df


def nearer(rounds: Sequence[float], gap: float, sd: float, alpha: float = ALPHA) -> str | None:
    """Whether a commit is nearer ``good`` or ``bad`` (None: not yet settled).

    Each round is ``log(mid/good) - log(bad/mid)``: about ``-gap`` when the midpoint
    performs as the good commit, ``+gap`` when it performs as the bad one (``gap`` is
    ``log(bad/good)``), whatever the machine's speed that minute. Those two answers are
    all a bisection asks for, so this is Wald's sequential probability ratio test between
    them rather than a confidence sequence around zero, which would guard against every
    effect in between and take several times the pairs. It tests ``±MARGIN * gap``: if
    the true gap is at least half the estimate and ``sd`` (the spread of one round) is
    right, a step errs with probability about ``alpha ** 2``; a gap overestimated twofold
    or a spread underestimated by 40 % still leaves it near ``alpha``.
    """
    if len(rounds) < MIN_ROUNDS or not gap > 0 or not sd > 0:
        return None
    evidence = 2 * MARGIN * gap * math.fsum(rounds) / sd**2  # the log-likelihood ratio
    bound = math.log(1 / alpha)
    return "bad" if evidence >= bound else "good" if evidence <= -bound else None
