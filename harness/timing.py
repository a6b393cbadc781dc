"""Wall-clock measurement of a callable on a device, honest about what a clock sees.

Accelerators run asynchronously, so every reading of the clock is preceded by a
device synchronisation; on CUDA the interval is taken from CUDA events recorded on
the stream. Fast calls are timed in blocks so the cost of reading the clock (and of
synchronising) stays under 0.1 % of what is measured, the approach of
``torch.utils.benchmark``'s ``blocked_autorange``. Sampling stops adaptively once
the median is known to ``target_precision`` or the time budget is spent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from harness.stats import LatencyStats

OVERHEAD_FRACTION = 1e-3


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on ``device``; a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class _Clock:
    """Times ``fn`` called ``n`` times back to back, in seconds, after a sync."""

    def __init__(self, device: torch.device):
        self.device = device

    def time(self, fn: Callable[[], object], n: int) -> float:
        if self.device.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            synchronize(self.device)
            start.record()
            for _ in range(n):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        synchronize(self.device)
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        synchronize(self.device)
        return (time.perf_counter_ns() - t0) / 1e9

    def overhead(self) -> float:
        """The cost of one empty timed interval: what a block must dwarf."""
        return min(self.time(lambda: None, 1) for _ in range(20))


@dataclass(frozen=True)
class MeasureConfig:
    """How long and how precisely to time one case."""

    warmup_time: float = 0.25
    warmup_iters: int = 2
    max_time: float = 1.0
    min_samples: int = 6  # the fewest for which the median's CI reaches 95 % coverage
    target_precision: float = 0.02

    def __post_init__(self) -> None:
        if self.max_time <= 0 or self.warmup_time < 0:
            raise ValueError("max_time must be positive and warmup_time non-negative")
        if self.min_samples < 1 or self.warmup_iters < 1:
            raise ValueError("min_samples and warmup_iters must be at least 1")
        if not 0 < self.target_precision < 1:
            raise ValueError("target_precision must be a fraction between 0 and 1")


@dataclass(frozen=True)
class Measurement:
    """The outcome of timing one callable: raw samples plus their statistics.

    ``samples`` are per-iteration seconds, one per block of ``block_size`` calls;
    they are kept so statistics can be recomputed or compared later.
    """

    samples: tuple[float, ...]
    block_size: int
    warmup_iters: int
    first_call: float
    stats: LatencyStats = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stats", LatencyStats.from_samples(self.samples))

    @property
    def iterations(self) -> int:
        return len(self.samples) * self.block_size

    def __repr__(self) -> str:
        return (f"Measurement({self.stats!r}, blocks={len(self.samples)}x{self.block_size}, "
                f"warmup={self.warmup_iters})")


def measure(fn: Callable[[], object], device: torch.device | str = "cpu",
            config: MeasureConfig = MeasureConfig()) -> Measurement:
    """Warm ``fn`` up, then time it in blocks until precise enough or out of time."""
    device = torch.device(device)
    clock = _Clock(device)
    first_call = clock.time(fn, 1)
    warmup_iters, warmup_spent, last = 1, first_call, first_call
    while warmup_iters < config.warmup_iters or warmup_spent < config.warmup_time:
        last = clock.time(fn, 1)
        warmup_iters += 1
        warmup_spent += last
    block_size = max(1, math.ceil(clock.overhead() / OVERHEAD_FRACTION / max(last, 1e-9)))

    samples: list[float] = []
    spent = 0.0
    next_check = 6  # the median's CI needs six samples; re-check as the count grows 10 %
    while True:
        elapsed = clock.time(fn, block_size)
        samples.append(elapsed / block_size)
        spent += elapsed
        if len(samples) < config.min_samples:
            continue
        if spent >= config.max_time:
            break
        if len(samples) >= next_check:
            if LatencyStats.from_samples(samples).relative_ci_halfwidth <= config.target_precision:
                break
            next_check = math.ceil(len(samples) * 1.1)
    return Measurement(tuple(samples), block_size, warmup_iters, first_call)
