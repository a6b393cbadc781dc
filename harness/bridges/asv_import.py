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
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.bridges.tracking import ModelParameters, asv_parameters, tracked_cases
from harness.errors import ResultsError, UsageError
from harness.measure.stats import LatencyStats
from harness.models.registry import Registry
from harness.store.record import CaseRecord, RunHeader
from harness.sweep.identity import CaseKey

MODULES = ("latency", "metrics")


@dataclass(frozen=True)
class AsvRun:
    """One asv results file as a harness run header and its case records."""

    header: RunHeader
    cases: list[CaseRecord]


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
    return sorted(runs, key=lambda run: run.header.environment["time"])


def _header(result: Any) -> RunHeader:
    params = result.params
    when = datetime.fromtimestamp(result.date / 1000, timezone.utc)
    return RunHeader(
        command=("asv", "run"),
        extra={"source": "asv"},
        environment={
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
    )


def _cases(result: Any, models: dict[str, ModelParameters]) -> dict[CaseKey, CaseRecord]:
    records: dict[CaseKey, CaseRecord] = {}
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
            key = tracked.case.key()
            record = records.get(key) or CaseRecord.of_case(
                tracked.case, extra={"source": "asv", "asv_env": result.env_name}
            )
            records[key] = _with(record, method, value, sampled)
    return records


def _with(record: CaseRecord, method: str, value: float, samples: list | None) -> CaseRecord:
    """``record`` with what one of asv's benchmark methods measured."""
    if method == "time_step":
        stats = (
            LatencyStats.from_samples(samples).to_dict()
            if samples and len(samples) > 1
            else {"median": value}
        )
        latency = {"unit": "s", **stats, "samples": list(samples or [])}
        return replace(
            record, latency=latency, throughput=record.batch_size and record.batch_size / value
        )
    if method == "track_throughput":  # the harness's own, beside asv's timing
        return replace(record, extra={**record.extra, "harness_throughput": value})
    if method == "track_peak_memory":
        return replace(record, memory={"cpu_peak_rss_bytes": int(value)})
    if method == "track_compile_time":
        return replace(record, compile={"time_s": value})
    return record
