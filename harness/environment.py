"""The fingerprint of the machine and software a run measured, stored with its results.

Two runs are only comparable when their environments are known: the same torch
build, thread count and CPU, or else a difference that explains the numbers.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import harness


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
        devices.append({"index": index, "name": props.name,
                        "memory_bytes": props.total_memory,
                        "capability": f"{props.major}.{props.minor}"})
    return devices


def collect() -> dict[str, Any]:
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "harness_version": harness.__version__,
        "torch_version": torch.__version__,
        "torch_git": torch.version.git_version,
        "cuda_version": torch.version.cuda,
        "cudnn_version": cudnn,
        "python_version": platform.python_version(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "gpus": _accelerators(),
        "hostname": socket.gethostname(),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(),
    }
