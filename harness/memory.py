"""Peak memory of one case: what the model costs beyond what the process had before.

CUDA keeps its own peak counters. For the CPU, Linux lets a process reset its
resident-set high-water mark (``/proc/self/clear_refs``), so the peak can be read
exactly instead of sampled; where that is impossible the lifetime peak stands in,
and the record says which method was used.
"""

from __future__ import annotations

import re
import resource
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

_STATUS = Path("/proc/self/status")


def _status_bytes(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


def _reset_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _lifetime_peak() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class PeakMemory:
    """Context manager measuring the peak memory of what runs inside it."""

    def __init__(self, device: torch.device):
        self.device = device
        self.result: dict[str, Any] = {}

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._cuda_base = torch.cuda.memory_allocated(self.device)
        self._exact = _reset_rss_peak()
        self._rss_base = _status_bytes("VmRSS") or 0
        return self

    def __exit__(self, *exc: object) -> None:
        peak = _status_bytes("VmHWM") if self._exact else None
        self.result["cpu_peak_rss_bytes"] = max(0, (peak or _lifetime_peak()) - self._rss_base)
        self.result["cpu_peak_method"] = "vmhwm-reset" if peak is not None else "lifetime-maxrss"
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.result["cuda_max_allocated_bytes"] = (
                torch.cuda.max_memory_allocated(self.device) - self._cuda_base)
            self.result["cuda_max_reserved_bytes"] = torch.cuda.max_memory_reserved(self.device)


def format_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"
