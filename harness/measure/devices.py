"""Devices: which exist here, how to wait for them, and how they say "out of memory".

The parent process of a sweep only asks whether a device exists; every kernel runs
in the case's own process, so CUDA is initialised there and never inherited.
"""

from __future__ import annotations

import os

import torch

from harness.axes import DEVICES as KNOWN_DEVICES
from harness.errors import UsageError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")
_TORCH_DEFAULT_THREADS = torch.get_num_threads()  # read at import, before anyone sets it


def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def check_devices(requested: list[str]) -> list[str]:
    """Refuse devices this machine lacks: asking for one explicitly is a usage error."""
    present = available_devices()
    for device in requested:
        if device not in KNOWN_DEVICES:
            raise UsageError(f"unknown device {device!r}; choose from {', '.join(KNOWN_DEVICES)}")
        if device not in present:
            raise UsageError(
                f"device {device!r} is not available on this machine (available: "
                f"{', '.join(present)}); drop it from --devices"
            )
    return requested


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on ``device``; a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or an allocator's failure on the CPU (e.g. under a limit)."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _OOM_MESSAGES)


def default_threads() -> int:
    """Intra-op threads when ``--threads`` is not given: one core fewer than torch's default.

    OpenMP's worker threads spin while they wait; when they fill every core, the OS and
    the harness's own process preempt them, and a case's median moves by tens of percent
    between runs (measured on 2 cores: see docs/measuring.md). An explicit ``OMP_NUM_THREADS``
    is the user's choice and is kept.
    """
    if "OMP_NUM_THREADS" in os.environ:
        return _TORCH_DEFAULT_THREADS
    return max(1, _TORCH_DEFAULT_THREADS - 1)
