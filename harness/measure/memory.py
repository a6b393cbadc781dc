"""Memory of one case: what the case itself adds to the process, at two levels.

The tensors: the peak of the bytes held by live tensors on the case's device over its
first eager steps, the model's parameters, buffers and inputs included, seen storage by
storage as operators return them and as they are freed. Exact, and free of the runtime's
noise; kernels' internal workspaces that never reach Python are not in it. On CUDA the
caching allocator's own counters say much the same over the whole case
(``cuda_max_allocated_bytes``, above its baseline).

The process: how far the resident set rose above a baseline taken after the runtime is
warm (thread pool started, a kernel of the case's dtype run) and before the model is
built. Linux lets a process reset its high-water mark (``/proc/self/clear_refs``), so
the peak is read exactly instead of sampled; where that is impossible the lifetime peak
stands in, and the record says which method was used. Two things are not the case's
and are kept out: the pages of shared libraries that its first calls map in (several
MiB of ``RssFile`` in a freshly forked child), and, in a long-lived process
(``--isolation none``), memory the allocator kept from earlier cases and would hand to
this one unseen: it is given back to the system (``malloc_trim``) before the baseline.
"""

from __future__ import annotations

import ctypes
import gc
import re
import resource
import sys
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from harness.measure.devices import synchronize

_STATUS = Path("/proc/self/status")
# elements of the warm-up's element-wise op: above ATen's grain size (32768), so it runs
# on the thread pool and starts its threads
WARM_ELEMENTS = 2**17
WARM_MATRIX = 64


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


def release_freed_memory() -> None:
    """Free unreachable objects and give the C allocator's free pages back to the system,
    so that memory reused by the next case shows in its resident set (glibc only)."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):  # a C library without malloc_trim (musl)
            pass


def warm_runtime(device: torch.device, dtype: torch.dtype) -> None:
    """Pay what a case's first kernels would pay once per process (the thread pool at the
    current thread count, the dtype's matmul kernels), so it lands before the baseline."""
    torch.ones(WARM_ELEMENTS, device=device, dtype=dtype).add_(1)
    square = torch.ones(WARM_MATRIX, WARM_MATRIX, device=device, dtype=dtype)
    try:
        square @ square
    except RuntimeError:  # no matmul in this dtype here: the case will say so itself
        pass
    synchronize(device)


def _storage(tensor: torch.Tensor) -> torch.UntypedStorage | None:
    try:
        storage = tensor.untyped_storage()
    except (RuntimeError, NotImplementedError):  # sparse, nested: no plain storage
        return None
    return storage if storage.nbytes() and storage.data_ptr() else None


class LiveTensorBytes(TorchDispatchMode):
    """The peak of the bytes of live tensors on ``device`` while it is active: those of
    ``held`` (the model's and its inputs, alive throughout), and those operators create.
    A storage counts from the operator that returns it (not one it was given, as a view
    or an in-place result is) until it is freed, which a finalizer on the storage sees
    exactly, however long autograd or a view keeps it alive.

    Enter it inside any ``inference_mode`` or ``autocast`` block and leave it before
    that block ends: those restore the dispatch state they found on exit.
    """

    def __init__(self, device: torch.device, held: Iterable[torch.Tensor] = ()):
        super().__init__()
        self.device_type = device.type
        storages = {
            s.data_ptr(): s.nbytes()
            for t in held
            if t.device.type == device.type and (s := _storage(t)) is not None
        }
        self._live: set[int] = set(storages)
        self.level = self.peak = sum(storages.values())

    def _freed(self, key: int, nbytes: int) -> None:
        if key in self._live:
            self._live.discard(key)
            self.level -= nbytes

    def _track(self, storage: torch.UntypedStorage) -> None:
        key, nbytes = storage.data_ptr(), storage.nbytes()
        if key in self._live:
            return
        self._live.add(key)
        self.level += nbytes
        self.peak = max(self.peak, self.level)
        weakref.finalize(storage, self._freed, key, nbytes).atexit = False

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        created = [
            s
            for t in tree_flatten(out)[0]
            if isinstance(t, torch.Tensor)
            and t.device.type == self.device_type
            and (s := _storage(t)) is not None
        ]
        if created:
            given = {
                s.data_ptr()
                for t in tree_flatten((args, kwargs))[0]
                if isinstance(t, torch.Tensor) and (s := _storage(t)) is not None
            }
            for storage in created:
                if storage.data_ptr() not in given:
                    self._track(storage)
        return out


class PeakMemory:
    """Context manager measuring what the code inside it adds to the process's memory
    (module doc). ``result`` holds, in bytes: ``cpu_baseline_rss_bytes`` (the process
    before), ``cpu_peak_rss_bytes`` (its peak above that), and on CUDA
    ``cuda_baseline_allocated_bytes``, ``cuda_max_allocated_bytes`` (above the baseline)
    and ``cuda_max_reserved_total_bytes`` (the caching allocator's peak for the whole
    process, baseline included).
    """

    def __init__(self, device: torch.device, dtype: torch.dtype = torch.float32):
        self.device = device
        self.dtype = dtype
        self.result: dict[str, Any] = {}

    def __enter__(self) -> PeakMemory:
        warm_runtime(self.device, self.dtype)
        release_freed_memory()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._cuda_base = torch.cuda.memory_allocated(self.device)
            self.result["cuda_baseline_allocated_bytes"] = self._cuda_base
        self._exact = _reset_rss_peak()
        self._rss_base = _status_bytes("VmRSS") or 0
        self._file_base = _status_bytes("RssFile") or 0
        self.result["cpu_baseline_rss_bytes"] = self._rss_base or None
        return self

    def __exit__(self, *exc: object) -> None:
        peak = _status_bytes("VmHWM") if self._exact else None
        libraries = max(0, (_status_bytes("RssFile") or 0) - self._file_base)
        self.result["cpu_peak_rss_bytes"] = max(
            0, (peak or _lifetime_peak()) - self._rss_base - libraries
        )
        self.result["cpu_peak_method"] = "vmhwm-reset" if peak is not None else "lifetime-maxrss"
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.result["cuda_max_allocated_bytes"] = (
                torch.cuda.max_memory_allocated(self.device) - self._cuda_base
            )
            self.result["cuda_max_reserved_total_bytes"] = torch.cuda.max_memory_reserved(
                self.device
            )
