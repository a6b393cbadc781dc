"""Latency statistics on synthetic data with known answers."""

import math
import random

import pytest

from harness.measure.stats import (
    LatencyStats,
    format_seconds,
    median_ci_ranks,
    per_label,
    quantile,
    t_quantile,
    t_tail,
    z_quantile,
)


@pytest.mark.parametrize(
    ("n", "ranks"),
    [
        # Textbook distribution-free 95 % CIs for the median (1-based x_(l)..x_(u)).
        (6, (0, 5)),
        (10, (1, 8)),
        (20, (5, 14)),
        (100, (39, 60)),
    ],
)
def test_median_ci_ranks_match_binomial_tables(n, ranks):
    assert median_ci_ranks(n) == ranks


def test_median_ci_ranks_with_too_few_samples_span_the_range():
    assert median_ci_ranks(1) == (0, 0)
    assert median_ci_ranks(5) == (0, 4)


def test_normal_approximation_joins_the_exact_ranks_smoothly():
    exact_lo, _ = median_ci_ranks(1000)
    approx_lo, approx_hi = median_ci_ranks(1001)
    assert abs(approx_lo - exact_lo) <= 1
    assert approx_hi == 1000 - approx_lo


def test_median_ci_covers_the_true_median_about_95_percent_of_the_time():
    rng = random.Random(1)
    n, trials, covered = 30, 2000, 0
    for _ in range(trials):
        stats = LatencyStats.from_samples([rng.expovariate(1.0) for _ in range(n)])
        covered += stats.ci_low <= 0.6931471805599453 <= stats.ci_high  # ln 2
    assert 0.93 <= covered / trials <= 0.99


def test_quantiles_interpolate_like_numpy():
    data = [1.0, 2.0, 3.0, 4.0]
    assert quantile(data, 0.5) == 2.5
    assert quantile(data, 0.25) == 1.75
    assert quantile(data, 0.0) == 1.0
    assert quantile(data, 1.0) == 4.0


def test_stats_summarise_a_known_sample():
    stats = LatencyStats.from_samples([5.0, 1.0, 4.0, 2.0, 3.0])
    assert (stats.n, stats.median, stats.mean, stats.min, stats.max) == (5, 3.0, 3.0, 1.0, 5.0)
    assert stats.iqr == 2.0
    assert stats.to_dict()["iqr"] == 2.0
    assert "median=3 s" in repr(stats)


def test_format_seconds_picks_a_readable_unit():
    assert format_seconds(1.5) == "1.5 s"
    assert format_seconds(0.00341) == "3.41 ms"
    assert format_seconds(2.5e-6) == "2.5 us"
    assert format_seconds(8.12e-7) == "812 ns"


@pytest.mark.parametrize(
    ("level", "df", "expected"),
    [
        # printed tables of Student's t (two-sided), and the normal's 1.96
        (0.95, 1, 12.7062),
        (0.95, 2, 4.3027),
        (0.95, 10, 2.2281),
        (0.95, 30, 2.0423),
        (0.99, 5, 4.0321),
        (0.6, 5, 0.9195),
        (0.95, math.inf, 1.9600),
    ],
)
def test_t_quantiles_match_the_tables(level, df, expected):
    assert t_quantile(level, df) == pytest.approx(expected, abs=1e-4)
    assert t_tail(expected, df) == pytest.approx(1 - level, rel=1e-3)


@pytest.mark.parametrize("t", [0.0, 0.1, 1.0, 3.0, 30.0])
def test_t_tails_match_the_closed_forms_of_one_and_two_degrees_of_freedom(t):
    assert t_tail(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), abs=1e-12)
    assert t_tail(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-12)


def test_t_tails_fall_between_whole_degrees_of_freedom_and_tend_to_the_normal():
    assert t_tail(2.5, 3) > t_tail(2.5, 3.5) > t_tail(2.5, 4)
    assert t_quantile(0.95, 1e7) == pytest.approx(z_quantile(0.95), abs=1e-5)


@pytest.mark.parametrize(
    ("units", "label"),
    [
        ([("call", 1)], "per call"),
        ([(None, 1)], "per call"),  # a record from before "per": its block size says it
        ([(float("nan"), 16.0)], "per block of 16"),  # a loaded column with gaps holds floats
        ([("block", 12), (None, 16)], "per block of 12-16"),  # repeats sized their own blocks
        ([("call", 1), ("block", 16)], "per call or block"),
        ([("block", "16")], "per block"),  # a size that is not a number is unknown
        ([(None, None)], "per call or block"),
    ],
)
def test_percentiles_are_named_per_call_or_per_block_also_for_old_records(units, label):
    assert per_label(units) == label
