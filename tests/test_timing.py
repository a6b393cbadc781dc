"""The timer's mechanics: warm-up, blocks, adaptive stop, honest statistics."""

import time

import pytest
import torch

from harness.measure.stats import per_label
from harness.measure.timing import MeasureConfig, measure


def test_a_fast_call_is_timed_in_blocks_that_dwarf_the_clock_overhead():
    x = torch.randn(64, 64)
    result = measure(lambda: x @ x, config=MeasureConfig(max_time=0.2, warmup_time=0.02))
    assert result.block_size > 1
    assert result.iterations == result.block_size * len(result.samples)
    assert result.stats.min <= result.stats.median <= result.stats.max


def test_samples_are_per_iteration_times_and_never_undercut_a_known_sleep():
    result = measure(lambda: time.sleep(0.005), config=MeasureConfig(max_time=0.1, warmup_time=0))
    assert result.block_size == 1
    assert result.stats.min >= 0.005  # sleep never returns early
    assert result.first_call >= 0.005


def test_sampling_stops_at_the_budget_with_at_least_min_samples():
    result = measure(
        lambda: time.sleep(0.02), config=MeasureConfig(max_time=0.01, warmup_time=0, min_samples=4)
    )
    assert len(result.samples) == 4


@pytest.mark.parametrize("iters", [1, 5, 40])
def test_warm_up_runs_at_least_the_configured_iterations(iters):
    calls = []
    result = measure(
        lambda: calls.append(1),
        config=MeasureConfig(warmup_iters=iters, warmup_time=0, max_time=0.01),
    )
    timed = result.block_size * len(result.samples)
    assert len(calls) - timed == result.warmup_iters >= iters  # every call is counted once


@pytest.mark.parametrize(
    "bad", [dict(max_time=0), dict(min_samples=0), dict(target_precision=1.5), dict(warmup_time=-1)]
)
def test_measure_config_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        MeasureConfig(**bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_timing_uses_events_and_returns_positive_samples():
    x = torch.randn(512, 512, device="cuda")
    result = measure(lambda: x @ x, "cuda", MeasureConfig(max_time=0.1))
    assert all(s > 0 for s in result.samples)


def test_a_call_long_enough_to_time_alone_gets_per_call_percentiles():
    result = measure(
        lambda: time.sleep(0.005), config=MeasureConfig(max_time=0.1, warmup_time=0, min_time=0.05)
    )
    assert (result.per, result.block_size) == ("call", 1)
    assert per_label([(result.per, result.block_size)]) == "per call"


def test_a_call_too_fast_to_time_alone_gets_percentiles_named_per_block():
    result = measure(lambda: None, config=MeasureConfig(max_time=0.05, warmup_time=0.01))
    assert result.per == "block" and result.block_size > 1
    assert per_label([(result.per, result.block_size)]) == f"per block of {result.block_size}"
