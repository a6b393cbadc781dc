"""Harness runs in pytest-benchmark's JSON format, for teams that gate with its tools.

Each ok case becomes one benchmark whose rounds are the run's per-iteration block
samples (``iterations`` is the block size), with pytest-benchmark's own statistics,
so ``pytest-benchmark compare`` and ``pytest --benchmark-compare`` read harness runs
beside their own. The case goes to ``extra_info`` as the pytest plugin records it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness.analysis.compare import latest_cases
from harness.errors import ResultsError, UsageError
from harness.store.results import environment_of
from harness.sweep.identity import CaseKey


def _stats(samples: list[float], iterations: int) -> dict[str, Any]:
    try:
        from pytest_benchmark.stats import Stats
    except ImportError:
        raise UsageError(
            "exporting to pytest-benchmark needs it: pip install pytest-benchmark"
        ) from None
    stats = Stats()
    for sample in samples:
        stats.update(sample)
    return {**stats.as_dict(), "data": list(samples), "iterations": iterations}


def _benchmark(row: dict[str, Any]) -> dict[str, Any]:
    key = CaseKey.of_record(row, measured=True)
    label = key.label
    return {
        "group": row["model"],
        "name": label,
        "fullname": f"harness::{label}",
        "params": None,
        "param": None,
        "extra_info": {**key.benchmark_info(), "run_id": row.get("run_id")},
        "options": {"timer": "perf_counter", "source": "harness"},
        "stats": _stats(row["latency.samples"], _block_size(row)),
    }


def _block_size(row: dict[str, Any]) -> int:
    """Calls per sample; 1 where the record does not say (an import: null, or NaN in a
    frame where other records say)."""
    block = row.get("latency.block_size")
    return int(block) if isinstance(block, (int, float)) and block >= 1 else 1


def to_pytest_benchmark(frame: pd.DataFrame) -> dict[str, Any]:
    """pytest-benchmark's JSON document for each case's last ok run in ``frame``
    (the samples of a case's repeats pooled, as pytest-benchmark pools its rounds)."""
    rows = []
    for records in latest_cases(frame).values():
        samples = [
            s
            for r in records
            if isinstance(r.get("latency.samples"), list)
            for s in r["latency.samples"]
        ]
        if samples:
            rows.append({**records[0], "latency.samples": samples})
    if not rows:
        raise ResultsError("no successful cases with samples to export")
    env = environment_of(rows[-1])
    return {
        "machine_info": {
            "node": env.get("hostname"),
            "processor": env.get("cpu_model"),
            "machine": env.get("machine"),
            "system": env.get("os"),
            "python_version": env.get("python_version"),
            "torch_version": env.get("torch_version"),
        },
        "commit_info": {
            "id": env.get("git.commit"),
            "dirty": env.get("git.dirty"),
            "project": "harness",
        },
        "benchmarks": [_benchmark(row) for row in rows],
        "datetime": env.get("time"),
        "version": "harness",
    }
