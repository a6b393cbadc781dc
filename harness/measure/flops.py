"""FLOPs of a step, and the peak FLOP/s a device reaches, to express utilisation.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode``, which knows the
matrix products and convolutions that dominate these models (element-wise ops are
not counted, nor fused kernels it has no formula for: a Transformer layer's inference
fast path, an LSTM). A step in which it counts nothing although operators ran has
unknown FLOPs (``null``), never 0.

The peak is not a datasheet number but the best rate of measured large matmuls in the
same dtype on the same device at the cases' thread count, taken once per run. A case
above it shows that the calibration missed its peak, not a utilisation over 100 %: its
utilisation is recorded as unknown and ``peak_exceeded`` says why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from harness.measure.devices import default_threads
from harness.measure.timing import MeasureConfig, measure

# matrix sizes per device type, smallest first: up to one large enough to reach the peak
CALIBRATION_SIZES = {"cpu": (512, 1024, 2048), "cuda": (4096, 8192), "mps": (2048, 4096)}
OTHER_SIZES = (1024, 2048)
CALIBRATION_CALLS = 2  # a size is skipped unless this many of its calls fit in its share


class _Computes(TorchDispatchMode):
    """Sees whether an operator other than a view ran on a tensor: work was done."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if not self.seen and not func.is_view:
            self.seen = any(isinstance(a, torch.Tensor) for a in tree_flatten((args, kwargs))[0])
        return func(*args, **(kwargs or {}))


def count_flops(step: Callable[[], object]) -> int | None:
    """FLOPs of one call of ``step``; ``None`` when unknown: the counter saw none although
    operators computed (kernels it has no formula for are not free)."""
    with FlopCounterMode(display=False) as counter, _Computes() as computes:
        step()
    total = int(counter.get_total_flops())
    return None if total == 0 and computes.seen else total


def flops_fields(per_step: int | None, median: float, peak: float | None) -> dict[str, Any]:
    """A record's ``flops``: the rate, and the fraction of the calibrated peak; that is
    null when unknown or above 1 (a calibration that missed this case's peak, flagged by
    ``peak_exceeded``), so a utilisation never reads over 100 %."""
    achieved = per_step / median if per_step is not None else None
    fraction = achieved / peak if achieved is not None and peak else None
    exceeded = fraction is not None and fraction > 1
    return {
        "per_step": per_step,
        "achieved_per_s": achieved,
        "peak_per_s": peak,
        "utilisation": None if exceeded else fraction,
        "peak_exceeded": exceeded,
    }


def calibrate_peak(
    device: str, dtype: torch.dtype, threads: int | None = None, max_time: float = 1.5
) -> float:
    """The best FLOP/s of n x n matmuls in ``dtype`` on ``device`` with the cases' thread
    count, over the device's sizes, in about ``max_time`` seconds.

    The best call, not the median: a peak is what the device can do, and a noisy
    median is beaten by cases. Each size has an equal share of the time; a larger size
    whose calls would not fit in it (predicted from the best rate so far) is skipped,
    so a slow device stays within the bound.
    """
    torch.set_num_threads(threads or default_threads())
    sizes = CALIBRATION_SIZES.get(torch.device(device).type, OTHER_SIZES)
    share = max_time / len(sizes)
    config = MeasureConfig(
        warmup_time=share / 4, min_time=share, max_time=share, min_samples=CALIBRATION_CALLS
    )
    best = 0.0
    for n in sizes:
        if best and CALIBRATION_CALLS * 2 * n**3 / best > share:
            break
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        with torch.inference_mode():
            result = measure(lambda a=a, b=b: torch.mm(a, b), device, config)
        best = max(best, 2 * n**3 / min(result.samples))
    return best
