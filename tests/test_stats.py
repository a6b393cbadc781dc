"""Latency statistics on synthetic data with known answers."""

import random

import pytest

from harness.stats import LatencyStats, format_seconds, median_ci_ranks, quantile


@pytest.mark.parametrize(("n", "ranks"), [
    # Textbook distribution-free 95 % CIs for the median (1-based x_(l)..x_(u)).
    (6, (0, 5)), (10, (1, 8)), (20, (5, 14)), (100, (39, 60)),
])
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
