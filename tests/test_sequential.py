"""The confidence sequence that decides when an ab case stops: valid under repeated looks,
early on large changes and on no change."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.analysis import sequential


def _first_verdict(log_ratios, threshold: float) -> tuple[str | None, int]:
    """Look after every pair, as harness ab does; the first settled verdict and when."""
    for state in sequential.looks(log_ratios):
        found = state.settled(threshold)
        if found:
            return found, state.pairs
    return None, len(log_ratios)


@pytest.mark.parametrize("noise", ["normal", "heavy-tailed"])
def test_false_alarms_under_a_look_after_every_pair_stay_at_or_below_alpha(noise):
    rng = np.random.default_rng(11)
    runs, pairs = 2000, 40
    alarms = 0
    for _ in range(runs):
        sd = rng.uniform(0.002, 0.03)  # each case its own spread, unknown to the rule
        draws = rng.normal(0, sd, pairs) if noise == "normal" else sd * rng.standard_t(4, pairs)
        alarms += any(state.p_value <= sequential.ALPHA for state in sequential.looks(draws))
    assert alarms / runs <= sequential.ALPHA


def test_the_sequence_holds_the_true_ratio_at_every_look_in_at_least_1_minus_alpha():
    rng = np.random.default_rng(12)
    truth = math.log(1.03)
    missed = sum(
        any(
            not state.low <= truth <= state.high
            for state in sequential.looks(rng.normal(truth, 0.01, 30))
        )
        for _ in range(1000)
    )
    assert missed / 1000 <= sequential.ALPHA


def test_a_doubled_workload_is_settled_slower_at_the_third_pair():
    rng = np.random.default_rng(13)
    verdict, pairs = _first_verdict(rng.normal(math.log(2), 0.01, 20), 0.02)
    assert (verdict, pairs) == ("slower", sequential.MIN_PAIRS)


def test_an_unchanged_case_is_settled_no_change_early():
    rng = np.random.default_rng(14)
    settled = [_first_verdict(rng.normal(0, 0.005, 30), 0.02) for _ in range(200)]
    assert all(verdict == "no change" for verdict, _ in settled)
    assert np.median([pairs for _, pairs in settled]) <= 6


def test_a_two_percent_slowdown_is_found_in_95_percent_within_fourteen_pairs():
    """The design point: pairs whose log-ratios spread by 0.8 %, as measured here."""
    rng = np.random.default_rng(15)
    found = [_first_verdict(rng.normal(math.log(1.02), 0.008, 14), 0.02)[0] for _ in range(500)]
    assert found.count("slower") / 500 >= 0.95
    assert found.count("no change") / 500 <= sequential.ALPHA  # 2 % ruled out: a miss


def test_no_sequence_is_open_before_the_third_pair_and_none_stays_open_after():
    states = list(sequential.looks([0.01, -0.01, 0.0, 0.02]))
    assert [math.isinf(s.high) for s in states[:2]] == [True, True]
    assert all(math.isfinite(s.high) and s.low < s.log_ratio < s.high for s in states[2:])
    assert [s.p_value for s in states] == sorted((s.p_value for s in states), reverse=True)


@pytest.mark.parametrize(
    "ratio, low, high, p, worse_above, expected",
    [
        (1.005, 0.99, 1.015, 0.5, True, "no change"),
        (1.012, 1.003, 1.019, 0.001, True, "no change"),  # real, but ruled smaller than 2 %
        (1.03, 1.01, 1.05, 0.001, True, "slower"),
        (0.97, 0.95, 0.99, 0.001, True, "faster"),
        (0.97, 0.95, 0.99, 0.001, False, "slower"),  # throughput fell
        (1.03, 0.99, 1.07, 0.3, True, "inconclusive"),
        (1.03, None, None, 0.3, True, "inconclusive"),
    ],
)
def test_verdicts_of_a_sequence(ratio, low, high, p, worse_above, expected):
    assert sequential.verdict(ratio, low, high, p, 0.02, worse_above=worse_above) == expected


def test_with_several_cases_a_regression_settles_only_where_its_bh_verdict_cannot_change():
    """p <= alpha/cases, so its q-value stays <= alpha whatever the other cases show."""
    log_ratios = [0.030, 0.036, 0.024, 0.033]
    state = sequential.look(log_ratios)
    assert sequential.ALPHA / 3 < state.p_value <= sequential.ALPHA
    assert state.settled(0.02) == "slower"
    assert state.settled(0.02, cases=3) is None
    assert sequential.look(log_ratios + [0.03, 0.031]).settled(0.02, cases=3) == "slower"


def _classify(
    rng: np.random.Generator,
    true_gap: float,
    gap: float,
    sd: float,
    true_sd: float,
    noise: str = "normal",
) -> tuple[bool, int]:
    """One simulated bisection step: (whether it erred, how many rounds it took)."""
    bad = bool(rng.integers(2))
    rounds: list[float] = []
    found = None
    while found is None:
        error = rng.standard_normal() if noise == "normal" else rng.standard_t(3) / math.sqrt(3)
        rounds.append((true_gap if bad else -true_gap) + true_sd * error)
        found = sequential.nearer(rounds, gap, sd)
    return found != ("bad" if bad else "good"), len(rounds)


@pytest.mark.parametrize(
    "true_gap, true_sd, noise, most",
    [
        (0.03, 0.03, "normal", sequential.ALPHA / 4),  # as estimated: about alpha squared
        (0.015, 0.03, "normal", sequential.ALPHA),  # the gap half its estimate
        (0.03, 0.042, "normal", sequential.ALPHA),  # the spread 40 % above its estimate
        (0.03, 0.03, "t3", sequential.ALPHA / 4),  # heavy tails, the same variance
    ],
)
def test_a_bisection_step_errs_at_most_alpha_within_its_stated_margins(
    true_gap, true_sd, noise, most
):
    rng = np.random.default_rng(7)
    runs = [_classify(rng, true_gap, 0.03, 0.03, true_sd, noise) for _ in range(3000)]
    errors = sum(e for e, _ in runs) / len(runs)
    assert errors <= most + 2 * math.sqrt(most / len(runs))
    assert np.median([n for _, n in runs]) <= 12


def test_a_bisection_step_settles_at_its_second_round_when_the_gap_dwarfs_the_noise():
    assert sequential.nearer([0.7], 0.69, 0.05) is None  # one round never decides
    assert sequential.nearer([0.7, 0.68], 0.69, 0.05) == "bad"
    assert sequential.nearer([-0.7, -0.68], 0.69, 0.05) == "good"
    assert sequential.nearer([0.01, -0.01], 0.69, 0.05) is None  # neither: look again
    assert sequential.nearer([0.7, 0.68], 0.69, math.nan) is None  # no spread known yet


def test_the_pooled_spread_is_taken_around_each_group_own_mean():
    sd, df = sequential.pooled_sd([[1.0, 3.0], [10.0, 12.0, 14.0], [5.0]])
    assert df == 1 + 2  # a group of one has no spread to give
    assert sd == pytest.approx(math.sqrt((2 + 8) / 3))
    assert math.isnan(sequential.pooled_sd([[1.0]])[0])
