"""asv's results as harness runs, for `harness compare`, `harness results` and reports.

asv keeps a file per machine, commit and environment; each becomes one harness run.
Its cases are the tracked cases asv's benchmarks were generated from, found again
through their asv parameters, so $HARNESS_TRACKED_SUITES must name the suites asv
ran. ``latency.<model>.time_step`` gives the latency: with asv's samples (``asv run
--record-samples``) the same statistics as a harness run, else asv's median alone;
``metrics.<model>.track_*`` give throughput, peak memory and compile time.
"""

from __future__ import annotations

import ast
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.errors import ResultsError, UsageError
from harness.registry import Registry
from harness.stats import LatencyStats
from harness.tracking import ModelParameters, asv_parameters, tracked_cases
from harness.worker import base_record

MODULES = ("latency", "metrics")


@dataclass(frozen=True)
class AsvRun:
    """One asv results file as a harness run header and its case records."""

    header: dict[str, Any]
    cases: list[dict[str, Any]]


def _results(directory: Path) -> Iterator[Any]:
    try:
        from asv.results import iter_results
    except ImportError:
        raise UsageError("reading asv's results needs asv: pip install asv") from None
    if not directory.is_dir():
        raise ResultsError(
            f"{directory} is not a directory of asv results "
            "(asv.conf.json's results_dir, results/asv/results)"
        )
    return iter_results(str(directory))


def load_asv_runs(
    directory: Path, registry: Registry, commit: str | None = None, machine: str | None = None
) -> list[AsvRun]:
    """The runs of ``directory``, oldest first, optionally of one commit or machine."""
    models = asv_parameters(tracked_cases(registry))
    runs = []
    for result in _results(Path(directory)):
        if (
            commit
            and not result.commit_hash.startswith(commit)
            or machine
            and result.params.get("machine") != machine
        ):
            continue
        runs.append(AsvRun(_header(result), list(_cases(result, models).values())))
    if not runs:
        which = " and ".join(f"{k} {v}" for k, v in (("commit", commit), ("machine", machine)) if v)
        raise ResultsError(f"no asv results in {directory}{' for ' + which if which else ''}")
    return sorted(runs, key=lambda run: run.header["environment"]["time"])


def _header(result: Any) -> dict[str, Any]:
    params = result.params
    when = datetime.fromtimestamp(result.date / 1000, timezone.utc)
    return {
        "command": ["asv", "run"],
        "source": "asv",
        "environment": {
            "hostname": params.get("machine"),
            "cpu_model": params.get("cpu"),
            "machine": params.get("arch"),
            "os": params.get("os"),
            "cpu_count": int(params["num_cpu"]) if params.get("num_cpu") else None,
            "torch_version": params.get("torch"),
            "asv_env": result.env_name,
            "gpus": [],
            "time": when.isoformat(timespec="seconds"),
            "git": {"commit": result.commit_hash, "dirty": False},
        },
    }


def _cases(result: Any, models: dict[str, ModelParameters]) -> dict[tuple, dict[str, Any]]:
    records: dict[tuple, dict[str, Any]] = {}
    for key in result.get_all_result_keys():
        module, model, method = (key.split(".") + ["", ""])[:3]
        if module not in MODULES or model not in models:
            continue
        params = result.get_result_params(key)
        values = result.get_result_value(key, params)
        samples = result.get_result_samples(key, params) or [None] * len(values)
        combos = itertools.product(*[[ast.literal_eval(v) for v in axis] for axis in params])
        for combo, value, sampled in zip(combos, values, samples):
            tracked = models[model].cases.get(tuple(combo))
            if tracked is None or value is None or math.isnan(value):
                continue  # no longer tracked, skipped or failed
            record = records.setdefault(
                tracked.case.key(),
                {**base_record(tracked.case), "source": "asv", "asv_env": result.env_name},
            )
            _set(record, method, value, sampled)
    return records


def _set(record: dict[str, Any], method: str, value: float, samples: list | None) -> None:
    if method == "time_step":
        stats = (
            LatencyStats.from_samples(samples).to_dict()
            if samples and len(samples) > 1
            else {"median": value}
        )
        record["latency"] = {"unit": "s", **stats, "samples": list(samples or [])}
        record["throughput"] = record["batch_size"] / value
    elif method == "track_throughput":
        record["harness_throughput"] = value  # the harness's own, beside asv's timing
    elif method == "track_peak_memory":
        record["memory"] = {"cpu_peak_rss_bytes": int(value)}
    elif method == "track_compile_time":
        record["compile"] = {"time_s": value}
