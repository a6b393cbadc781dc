"""How often do two separate runs catch a true 5 % slowdown, and how often do they cry wolf?

    python scripts/validate_compare.py [--rounds 40] [--repeats 8] [--threshold 0.03]
                                       [--sample-time S] [--out FILE] [--json PATH]
    python scripts/validate_compare.py --analyse FILE [--threshold 0.03]

Each round measures the built-in ``calibration_matmul`` in four roles: WORK=20 and
WORK=21 (exactly 5 % more work: the slowdown pair), and WORK=20 twice more (the A/A
pair), each as separate ``harness run --repeats R`` runs would: R fresh processes,
round-robin over the roles, each sampling ``--sample-time`` seconds (default 0.03); the
role order alternates between rounds. (``scripts/validate_ab.py`` measures ``harness
ab``, which times both sides turn about, on real models.)

The same pairs are then judged by:

* the harness: ``compare.estimate``, exactly as ``harness compare`` judges them: a
  bootstrap over processes with R >= 5, else Hodges-Lehmann on the samples widened by
  the run's machine noise (its heartbeats); slower if p <= 0.05 and the ratio is at
  least 1 + threshold;
* asv compare's default rule: its own ``_is_result_better`` with factor 1.1 (a
  Mann-Whitney test at p < 0.002, or non-overlapping 99 % CIs, and a 10 % change);
* pytest-benchmark's ``--benchmark-compare-fail`` with ``min:5%``, ``median:5%`` and
  ``mean:5%``, through its own ``parse_compare_fail``.

asv and pytest-benchmark see all of a role's samples pooled, as they pool their own
processes and rounds. All rules see the same samples: the same measuring time. The raw
records are kept (``--out``), and ``--analyse`` re-judges them, e.g. at another
threshold. Needs the dev extra (asv and pytest-benchmark).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from other_rules import Records, Rule, asv_rule, pytest_benchmark_rule

from harness.analysis import compare, significance
from harness.analysis.noise import MachineNoise, machine_noise
from harness.execute.isolation import ProcessExecutor
from harness.measure.timing import MeasureConfig
from harness.models.registry import load_registry
from harness.store.record import RunHeader
from harness.store.results import ResultsWriter, load
from harness.sweep.plan import Case

MODEL = "calibration_matmul"
BASE_WORK, SLOW_WORK = 20, 21  # 5 % more matrix products
ROLES = ("a", "b", "a2", "a3")  # a vs b: the true slowdown; a2 vs a3: A/A

SAMPLE_TIME = 0.03  # seconds of samples per process: what one default run samples
Noise = Mapping[str, MachineNoise]  # by run id: what judges fewer than 5 processes


def _cases() -> dict[str, Case]:
    spec = load_registry().model(MODEL).spec
    base = Case(MODEL, spec.batch_sizes[0], dims=spec.resolve_dims({"WORK": BASE_WORK}))
    slow = replace(base, dims=spec.resolve_dims({"WORK": SLOW_WORK}))
    return {"a": base, "b": slow, "a2": base, "a3": base}


def measure_runs(rounds: int, repeats: int, sample_time: float, writer: ResultsWriter) -> None:
    """Every role as R fresh processes, round-robin over the roles."""
    cases = _cases()
    executor = ProcessExecutor([], [], timeout=300)
    config = MeasureConfig(warmup_time=0.1, min_time=sample_time, max_time=sample_time)
    for index in range(rounds):
        order = ROLES if index % 2 == 0 else ("b", "a", "a3", "a2")
        for repeat in range(repeats):
            for role in order:
                record = executor.measure(replace(cases[role], repeat=repeat), config, {})
                writer.write_case(
                    replace(record, extra={**record.extra, "round": index, "role": role})
                )
        print(f"round {index + 1}/{rounds} done", flush=True)


def _shift(base: Records, cand: Records, noise: Noise) -> significance.ShiftEstimate:
    """What ``harness compare`` estimates for one role against another."""
    est = compare.estimate(base, cand, "latency", noise)
    assert isinstance(est, significance.ShiftEstimate), getattr(est, "reason", "no samples")
    return est


def harness_rule(threshold: float, noise: Noise) -> Rule:
    def slower(base: Records, cand: Records) -> bool:
        return significance.judge(_shift(base, cand, noise), threshold, True) == "slower"

    return slower


def analyse(path: Path, threshold: float) -> dict[str, Any]:
    rounds: dict[int, dict[str, list]] = {}
    frame = load(path)
    noise = machine_noise(frame)
    for row in frame.to_dict("records"):
        if row["status"] == "ok":
            rounds.setdefault(row["round"], {}).setdefault(row["role"], []).append(row)
    complete = [r for r in rounds.values() if set(r) == set(ROLES)]
    rules: dict[str, Rule] = {
        f"harness compare (threshold {threshold:.0%})": harness_rule(threshold, noise),
        "asv compare (factor 1.1)": asv_rule(1.1),
        **{
            f"pytest-benchmark {e}": pytest_benchmark_rule(e)
            for e in ("min:5%", "median:5%", "mean:5%")
        },
    }
    table = {}
    for name, rule in rules.items():
        detected = sum(rule(r["a"], r["b"]) for r in complete)
        false_alarms = sum(rule(r["a2"], r["a3"]) for r in complete)
        table[name] = {
            "detection": detected / len(complete),
            "false_alarms": false_alarms / len(complete),
        }
    measured = [
        sum(s * r["latency.block_size"] for r in role for s in r["latency.samples"])
        for group in complete
        for role in group.values()
    ]
    ratios = [_shift(r["a"], r["b"], noise).ratio for r in complete]
    aa = [_shift(r["a2"], r["a3"], noise).ratio for r in complete]
    return {
        "pairs": len(complete),
        "rules": table,
        "measuring_time_per_run_s": sum(measured) / len(measured),
        "slowdown_ratio_median": sorted(ratios)[len(ratios) // 2],
        "slowdown_ratio_range": [min(ratios), max(ratios)],
        "aa_ratio_range": [min(aa), max(aa)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=8, help="processes per role")
    parser.add_argument(
        "--sample-time",
        type=float,
        default=SAMPLE_TIME,
        help=f"seconds of timed samples per process (default {SAMPLE_TIME})",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.03,
        help="the harness's threshold as a fraction (default 0.03)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("results/validation/compare-runs.jsonl"),
        help="raw records (default results/validation/compare-runs.jsonl)",
    )
    parser.add_argument("--analyse", type=Path, metavar="FILE", help="judge recorded rounds")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    source = args.analyse
    if source is None:
        source = args.out
        header = RunHeader(
            command=("scripts/validate_compare.py", *sys.argv[1:]),
            settings={"sample_time": args.sample_time, "repeats": args.repeats},
        )
        started = time.monotonic()
        with ResultsWriter(source, header) as writer:
            measure_runs(args.rounds, args.repeats, args.sample_time, writer)
        print(f"measured {args.rounds} rounds in {time.monotonic() - started:.0f} s")
    result = analyse(source, args.threshold)
    print(
        f"{result['pairs']} slowdown pairs and {result['pairs']} A/A pairs from {source}; "
        f"{result['measuring_time_per_run_s']:.2f} s of timed samples per role"
    )
    print(
        f"measured slowdown ratio: median {result['slowdown_ratio_median']:.4f}, range "
        f"{result['slowdown_ratio_range'][0]:.4f}..{result['slowdown_ratio_range'][1]:.4f}; "
        f"A/A ratio range {result['aa_ratio_range'][0]:.4f}..{result['aa_ratio_range'][1]:.4f}"
    )
    print(f"{'rule':<34} {'detects 5 %':>12} {'false alarms':>13}")
    for name, row in result["rules"].items():
        print(f"{name:<34} {row['detection']:>12.0%} {row['false_alarms']:>13.0%}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
