"""Other tools' verdicts on the harness's samples: asv compare's and pytest-benchmark's
own code, applied to each side's pooled samples (as both pool their processes and
rounds), so the validation scripts compare rules on exactly the same measurements.

Needs the dev extra (asv and pytest-benchmark).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from asv.commands.compare import _is_result_better
from asv_runner.statistics import compute_stats
from pytest_benchmark.utils import parse_compare_fail

from harness.measure.stats import LatencyStats

Records = Sequence[Mapping[str, Any]]  # one side's records, as rows of results.load
Rule = Callable[[Records, Records], bool]  # (baseline, candidate) -> "slower"?


def _pooled(records: Records) -> list[float]:
    return [s for r in records for s in r["latency.samples"]]


def asv_rule(factor: float) -> Rule:
    """``asv compare``'s call: its ``_is_result_better`` at ``factor`` (asv's default 1.1:
    a Mann-Whitney test at p < 0.002 or non-overlapping 99 % CIs, and the factor)."""

    def slower(base: Records, cand: Records) -> bool:
        def asv_result(records: Records) -> tuple[float, tuple[dict, list[float]]]:
            samples = _pooled(records)
            value, stats = compute_stats(samples, int(records[0]["latency.block_size"]))
            return value, (stats, samples)

        a, a_ss = asv_result(base)
        b, b_ss = asv_result(cand)
        return bool(_is_result_better(a, b, a_ss, b_ss, factor=factor))

    return slower


def pytest_benchmark_rule(expression: str) -> Rule:
    """``pytest --benchmark-compare-fail=EXPRESSION`` (e.g. ``min:5%``), by its own parser."""
    check = parse_compare_fail(expression)

    def slower(base: Records, cand: Records) -> bool:
        fields = ("min", "median", "mean")
        ours, theirs = (LatencyStats.from_samples(_pooled(r)) for r in (cand, base))
        return bool(
            check.fails(
                {f: getattr(ours, f) for f in fields}, {f: getattr(theirs, f) for f in fields}
            )
        )

    return slower
