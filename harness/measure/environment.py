"""The fingerprint of the machine and software a run measured, stored with its results.

Two runs are only comparable when their environments are known: the same torch
build, thread count and CPU, or else a difference that explains the numbers.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import harness
from harness.measure.devices import default_threads

# Instruction-set extensions that decide which kernels torch can use.
_ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
    "asimd",
    "sve",
    "sve2",
    "bf16",
    "i8mm",
)


# Environment variables that move timings: thread pools, their placement, allocators and
# the compiler's choices. Recorded as set (unset ones are absent), each value cut short.
_ENV_NAMES = (
    "OPENBLAS_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "PYTORCH_CUDA_ALLOC_CONF",
    "PYTORCH_ALLOC_CONF",
    "LD_PRELOAD",
)
_ENV_PREFIXES = ("OMP_", "MKL_", "KMP_", "GOMP_", "TORCHINDUCTOR_")
MAX_ENV_VALUE = 200  # characters: a value is recorded to tell runs apart, not to be kept
MAX_ENV_VARIABLES = 64
# Distributions that may provide ``triton`` (upstream, PyTorch's nightly and ROCm builds).
_TRITON_DISTRIBUTIONS = ("triton", "pytorch-triton", "pytorch-triton-rocm")


def _cpuinfo(field: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == field:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    present = set((_cpuinfo("flags") or _cpuinfo("Features") or "").split())
    return [flag for flag in _ISA_FLAGS if flag in present]


def _gpu_driver() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.splitlines()[0].strip() if out.returncode == 0 and out.stdout else None


def _torch_build() -> dict[str, Any]:
    return {
        "debug": torch.version.debug,
        "cuda": torch.version.cuda,
        "hip": torch.version.hip,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "mkl": torch.backends.mkl.is_available(),
        "openmp": torch.backends.openmp.is_available(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def _git(*args: str, cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(cwd: Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the code under test: the repository the run starts in."""
    cwd = cwd or Path.cwd()
    commit = _git("rev-parse", "HEAD", cwd=cwd)
    if commit is None:
        return {"commit": None, "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=cwd)
    return {"commit": commit, "dirty": bool(status)}


def _accelerators() -> list[dict[str, Any]]:
    if not torch.cuda.is_available():
        return []
    devices = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        devices.append(
            {
                "index": index,
                "name": props.name,
                "memory_bytes": props.total_memory,
                "capability": f"{props.major}.{props.minor}",
            }
        )
    return devices


def _setting(read: Callable[[], Any]) -> Any:
    """One flag of torch's, or None where this build lacks it (or refuses to say)."""
    try:
        value = read()
    except (AttributeError, RuntimeError):
        return None
    return value if isinstance(value, (bool, str)) else None


def torch_settings() -> dict[str, Any]:
    """Process-wide numerics flags that change which kernels run, and so the timings:
    TF32 on float32 matmuls and convolutions, cuDNN's autotuning and determinism."""
    backends = torch.backends
    return {
        name: _setting(read)
        for name, read in (
            ("float32_matmul_precision", torch.get_float32_matmul_precision),
            ("cuda_matmul_allow_tf32", lambda: backends.cuda.matmul.allow_tf32),
            ("cudnn_allow_tf32", lambda: backends.cudnn.allow_tf32),
            ("cudnn_benchmark", lambda: backends.cudnn.benchmark),
            ("cudnn_deterministic", lambda: backends.cudnn.deterministic),
            ("deterministic_algorithms", torch.are_deterministic_algorithms_enabled),
        )
    }


def environment_variables(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The set variables among those that move timings (see ``_ENV_NAMES``), sorted, at
    most ``MAX_ENV_VARIABLES`` of them, each value at most ``MAX_ENV_VALUE`` characters."""
    names = sorted(n for n in environ if n in _ENV_NAMES or n.startswith(_ENV_PREFIXES))
    return {name: environ[name][:MAX_ENV_VALUE] for name in names[:MAX_ENV_VARIABLES]}


def _triton_version() -> str | None:
    """The installed triton's version, read from its metadata: importing it costs seconds."""
    for name in _TRITON_DISTRIBUTIONS:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _memory_bytes() -> int | None:
    """Total physical memory, where the OS says (Linux, macOS)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def collect() -> dict[str, Any]:
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "harness_version": harness.__version__,
        "torch_version": torch.__version__,
        "torch_git": torch.version.git_version,
        "torch_build": _torch_build(),
        "cuda_version": torch.version.cuda,
        "cudnn_version": cudnn,
        "python_version": platform.python_version(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cpu_count": os.cpu_count(),
        "threads": default_threads(),  # what cases use unless --threads says otherwise
        "memory_bytes": _memory_bytes(),
        "triton_version": _triton_version(),
        "torch_settings": torch_settings(),
        "environment_variables": environment_variables(),
        "gpus": _accelerators(),
        "gpu_driver": _gpu_driver() if torch.cuda.is_available() else None,
        "hostname": socket.gethostname(),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(),
    }
