"""Wall-clock measurement of a callable on a device, honest about what a clock sees.

Accelerators run asynchronously, so every reading of the clock is preceded by a
device synchronisation; on CUDA the interval is taken from CUDA events recorded on
the stream. Fast calls are timed in blocks so the cost of reading the clock (and of
synchronising) stays under 0.1 % of what is measured, the approach of
``torch.utils.benchmark``'s ``blocked_autorange``. Sampling stops adaptively once
the median is known to ``target_precision`` or the time budget is spent.

A call at least 1000 times the clock's cost (from about 1 ms on a CPU whose clock costs
1 us) is therefore timed alone: each sample is one call, and the percentiles are those of
calls. A faster call is timed in blocks, each sample the mean of a block, whose spread is
narrower than that of the calls in it: those percentiles are per block (``per``), while
the median and mean remain times per call.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from harness.measure.devices import synchronize
from harness.measure.stats import (
    HEARTBEAT_BLOCKS,
    HEARTBEAT_PRODUCTS,
    HEARTBEAT_SIZE,
    LatencyStats,
    timed_per,
)

OVERHEAD_FRACTION = 1e-3
STEADY_TOLERANCE = 0.05  # warm-up goes on while calls still get 5 % faster


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
    """How long and how precisely to time one case.

    Warm-up takes at least ``warmup_iters`` calls and ``warmup_time`` seconds after
    the first call, then goes on while call times are still falling, for at most
    ``max(warmup_time, max_time)``. Sampling lasts at least ``min_time`` (capped by
    ``max_time``) even once the CI is narrow: a few milliseconds of samples can be
    tight and still all fall inside one burst of interference.
    """

    warmup_time: float = 0.25
    warmup_iters: int = 2
    min_time: float = 0.2
    max_time: float = 1.0
    min_samples: int = 6  # the fewest for which the median's CI reaches 95 % coverage
    target_precision: float = 0.02

    def __post_init__(self) -> None:
        if self.max_time <= 0 or self.warmup_time < 0 or self.min_time < 0:
            raise ValueError("max_time must be positive, warmup_time and min_time non-negative")
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

    @property
    def per(self) -> str:
        """What the samples' spread is of: ``"call"`` (timed alone) or ``"block"``."""
        return timed_per(self.block_size)

    def __repr__(self) -> str:
        return (
            f"Measurement({self.stats!r}, blocks={len(self.samples)}x{self.block_size}, "
            f"warmup={self.warmup_iters})"
        )


def time_call(fn: Callable[[], object], device: torch.device | str = "cpu") -> float:
    """Seconds for one synchronised call, e.g. the first call of a compiled model."""
    return _Clock(torch.device(device)).time(fn, 1)


@dataclass(frozen=True)
class WarmUp:
    """What warming a callable up found: its first call, and the block to time it in."""

    first_call: float  # includes lazy initialisation and any compilation
    iters: int
    last: float  # seconds of the last warm call: what a block of ``block_size`` costs each
    block_size: int


def warm_up(
    fn: Callable[[], object],
    device: torch.device | str = "cpu",
    config: MeasureConfig = MeasureConfig(),
) -> WarmUp:
    """Call ``fn`` until its times stop falling, then size a block to dwarf the clock."""
    clock = _Clock(torch.device(device))
    first_call = clock.time(fn, 1)
    times = [clock.time(fn, 1)]
    warm = times[0]  # a running total: fast calls make ``times`` long
    budget = max(config.warmup_time, config.max_time)
    while warm < budget and (
        len(times) < config.warmup_iters or warm < config.warmup_time or _falling(times)
    ):
        times.append(clock.time(fn, 1))
        warm += times[-1]
    last = min(times[-2:])
    block_size = max(1, math.ceil(clock.overhead() / OVERHEAD_FRACTION / max(last, 1e-9)))
    return WarmUp(first_call, len(times) + 1, last, block_size)


def time_blocks(
    fn: Callable[[], object], device: torch.device | str, block_size: int, count: int
) -> list[float]:
    """``count`` samples of per-call seconds, each over a block of ``block_size`` calls."""
    clock = _Clock(torch.device(device))
    return [clock.time(fn, block_size) / block_size for _ in range(count)]


def measure(
    fn: Callable[[], object],
    device: torch.device | str = "cpu",
    config: MeasureConfig = MeasureConfig(),
) -> Measurement:
    """Warm ``fn`` up, then time it in blocks until precise enough or out of time."""
    device = torch.device(device)
    clock = _Clock(device)
    warm = warm_up(fn, device, config)
    block_size = warm.block_size
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
        if spent < config.min_time:
            continue
        if len(samples) >= next_check:
            if LatencyStats.from_samples(samples).relative_ci_halfwidth <= config.target_precision:
                break
            next_check = math.ceil(len(samples) * 1.1)
    return Measurement(tuple(samples), block_size, warm.iters, warm.first_call)


def heartbeat(device: torch.device | str = "cpu") -> float:
    """Per-product seconds of a fixed reference workload (median of its blocks) on
    ``device`` at the current thread count: how fast the machine is right now.

    Recorded before and after each case, its spread over a run estimates how much the
    machine's speed wanders between cases, which the samples of one process cannot
    show and ``harness compare`` needs to judge two single-process runs.
    """
    device = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    a, b = (
        torch.randn(HEARTBEAT_SIZE, HEARTBEAT_SIZE, generator=generator).to(device)
        for _ in range(2)
    )
    product = torch.empty_like(a)

    def block() -> None:
        for _ in range(HEARTBEAT_PRODUCTS):
            torch.mm(a, b, out=product)

    with torch.no_grad():
        torch.mm(a, b, out=product)  # the first product pays for lazy initialisation
        blocks = time_blocks(block, device, 1, HEARTBEAT_BLOCKS)
    return statistics.median(blocks) / HEARTBEAT_PRODUCTS


def _falling(times: list[float]) -> bool:
    """Whether the last two calls were clearly faster than the two before them."""
    if len(times) < 4:
        return True
    recent, before = sorted(times[-2:]), sorted(times[-4:-2])
    return recent[0] + recent[1] < (1 - STEADY_TOLERANCE) * (before[0] + before[1])
