"""FLOPs of a step, and the peak FLOP/s a device reaches, to express utilisation.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode``, which knows the
matrix products and convolutions that dominate these models (element-wise ops are
not counted). The peak is not a datasheet number but a measured large matmul in the
same dtype on the same device, taken once per run.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from harness.devices import default_threads
from harness.timing import MeasureConfig, measure

CALIBRATION_SIZE = {"cpu": 1024, "cuda": 8192, "mps": 4096}


def count_flops(step: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def calibrate_peak(device: str, dtype: torch.dtype, threads: int | None = None,
                   max_time: float = 0.5) -> float:
    """FLOP/s of an n x n matmul in ``dtype`` on ``device`` with the cases' thread count."""
    torch.set_num_threads(threads or default_threads())
    n = CALIBRATION_SIZE.get(torch.device(device).type, 2048)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    with torch.inference_mode():
        result = measure(lambda: torch.mm(a, b), device,
                         MeasureConfig(max_time=max_time, warmup_time=0.1))
    return 2 * n**3 / result.stats.median
