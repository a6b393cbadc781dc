"""Benchmarks of the harness itself: overhead, agreement and repeatability.

    python scripts/selfbench.py [overhead|agreement|repeatability ...] [--json PATH]

overhead       per-iteration cost the harness adds to a trivial model, against a bare
               timed loop of the same call (goal: 1 us or less)
agreement      the harness's median against torch.utils.benchmark's blocked_autorange
               on the same cases, measured alternately (goal: within 2 %)
repeatability  the spread of one case's median over 10 separate `harness run`s

Figures go to stdout (and to --json); nothing here is asserted, since wall-clock
results depend on the machine. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils import benchmark

from harness import Input, ModelSpec
from harness.execute.worker import measure_case
from harness.execute.workload import prepare_workload
from harness.measure.devices import default_threads
from harness.measure.timing import MeasureConfig
from harness.models.registry import load_registry
from harness.store.record import CaseRecord
from harness.store.results import iter_records
from harness.sweep.plan import Case

ROUNDS = 7
AGREEMENT_CASES = [("mlp", 8), ("dcgan_generator", 2), ("lstm", 4), ("alexnet", 1)]
SAME_TIME = MeasureConfig(min_time=1.0, max_time=1.0)
REPEAT_CASE = ("mlp", 8)
REPEATS = 10


def _bare_loop(fn, iterations: int) -> float:
    """Seconds per call of the plainest timed loop there is."""
    t0 = time.perf_counter_ns()
    for _ in range(iterations):
        fn()
    return (time.perf_counter_ns() - t0) / 1e9 / iterations


def overhead() -> dict:
    """The harness's median per call minus a bare loop's, on nn.Identity under inference."""
    spec = ModelSpec(
        name="identity", constructor=nn.Identity, inputs=[Input("x", "(B, 1)")], outputs=["(B, 1)"]
    )
    case = Case("identity", 1)
    config = MeasureConfig(max_time=0.5, target_precision=0.005)
    workload = prepare_workload(spec, case, 1)  # the very call the harness times
    harness_s, bare_s = [], []
    with workload.context:
        for _ in range(ROUNDS):
            record = measure_case(spec, case, config)
            harness_s.append(record.latency["median"])
            iterations = record.latency["block_size"]
            bare_s.append(
                statistics.median(
                    _bare_loop(workload.step, iterations) for _ in range(record.latency["blocks"])
                )
            )
    diffs = [h - b for h, b in zip(harness_s, bare_s)]
    return {
        "harness_median_s": statistics.median(harness_s),
        "bare_median_s": statistics.median(bare_s),
        "overhead_s": statistics.median(diffs),
        "overhead_range_s": [min(diffs), max(diffs)],
        "rounds": ROUNDS,
        "goal_s": 1e-6,
    }


def _timer(workload) -> benchmark.Timer:
    """A Timer on the harness's own step, with the harness's thread count (Timer's is 1)."""
    return benchmark.Timer(
        stmt="step()", globals={"step": workload.step}, num_threads=default_threads()
    )


def agreement() -> list[dict]:
    """Harness median over blocked_autorange median, alternating to share any drift."""
    registry = load_registry()
    rows = []
    for name, batch in AGREEMENT_CASES:
        spec = registry.model(name).spec
        case = Case(name, batch, dims=spec.resolve_dims())
        workload = prepare_workload(spec, case, batch)
        ratios, ours, theirs = [], [], []
        with workload.context:
            timer = _timer(workload)
            for i in range(ROUNDS):
                # the same sampling time each, and each goes first in turn
                def ours_now(spec=spec, case=case) -> float:
                    return measure_case(spec, case, SAME_TIME).latency["median"]

                def theirs_now(timer=timer) -> float:
                    return timer.blocked_autorange(min_run_time=SAME_TIME.max_time).median

                if i % 2:
                    t, h = theirs_now(), ours_now()
                else:
                    h, t = ours_now(), theirs_now()
                ours.append(h)
                theirs.append(t)
                ratios.append(h / t)
        rows.append(
            {
                "model": name,
                "batch_size": batch,
                "harness_median_s": statistics.median(ours),
                "blocked_autorange_median_s": statistics.median(theirs),
                "ratio": statistics.median(ratios),
                "ratio_range": [min(ratios), max(ratios)],
            }
        )
    return rows


def _autorange_once(name: str, batch: int) -> float:
    """blocked_autorange's median for one case in this (fresh) process."""
    spec = load_registry().model(name).spec
    workload = prepare_workload(spec, Case(name, batch, dims=spec.resolve_dims()), batch)
    with workload.context:
        return _timer(workload).blocked_autorange(min_run_time=1.0).median


def _spread(medians: list[float]) -> dict:
    centre = statistics.median(medians)
    return {
        "medians_s": medians,
        "median_of_medians_s": centre,
        "relative_range": (max(medians) - min(medians)) / centre,
        "relative_stdev": statistics.stdev(medians) / statistics.mean(medians),
    }


def repeatability() -> dict:
    """One case by REPEATS separate `harness run`s, alternating with as many separate
    blocked_autorange processes: the machine's own run-to-run noise, for scale."""
    name, batch = REPEAT_CASE
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(REPEATS):
            out = Path(tmp) / f"run{i}.jsonl"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "harness",
                    "run",
                    "-m",
                    name,
                    "-b",
                    str(batch),
                    "-q",
                    "--out",
                    str(out),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            (record,) = [r for r in iter_records(out) if isinstance(r, CaseRecord)]
            ours.append(record.latency["median"])
            theirs.append(
                float(
                    subprocess.run(
                        [sys.executable, __file__, "--autorange-once", name, str(batch)],
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout
                )
            )
    return {
        "model": name,
        "batch_size": batch,
        "runs": REPEATS,
        "harness": _spread(ours),
        "blocked_autorange": _spread(theirs),
    }


BENCHMARKS = {"overhead": overhead, "agreement": agreement, "repeatability": repeatability}


def _report(name: str, result) -> None:
    us = 1e6
    if name == "overhead":
        low, high = result["overhead_range_s"]
        print(
            f"overhead: harness {result['harness_median_s'] * 1e9:.0f} ns/call, bare loop "
            f"{result['bare_median_s'] * 1e9:.0f} ns/call -> overhead "
            f"{result['overhead_s'] * 1e9:.0f} ns (range {low * 1e9:.0f}..{high * 1e9:.0f} ns "
            f"over {result['rounds']} rounds)"
        )
    elif name == "agreement":
        print("agreement (harness median / blocked_autorange median):")
        for row in result:
            low, high = row["ratio_range"]
            print(
                f"  {row['model']:<16} B={row['batch_size']:<3} "
                f"{row['harness_median_s'] * us:10.1f} us "
                f"{row['blocked_autorange_median_s'] * us:10.1f} us  ratio {row['ratio']:.4f} "
                f"(range {low:.4f}..{high:.4f})"
            )
    else:
        print(
            f"repeatability: {result['model']} B={result['batch_size']}, "
            f"{result['runs']} separate runs each:"
        )
        for tool in ("harness", "blocked_autorange"):
            spread = result[tool]
            print(
                f"  {tool:<18} median {spread['median_of_medians_s'] * us:8.1f} us, range "
                f"{spread['relative_range']:6.2%}, stdev {spread['relative_stdev']:6.2%}  "
                f"[{' '.join(f'{m * us:.0f}' for m in spread['medians_s'])}]"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "which",
        nargs="*",
        metavar="|".join(BENCHMARKS),
        help="which benchmarks to run (default: all)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--autorange-once", nargs=2, metavar=("MODEL", "BATCH"), help=argparse.SUPPRESS
    )  # the fresh process of repeatability()
    args = parser.parse_args()
    if args.autorange_once:
        print(_autorange_once(args.autorange_once[0], int(args.autorange_once[1])))
        return
    unknown = set(args.which) - set(BENCHMARKS)
    if unknown:
        parser.error(
            f"unknown benchmark {sorted(unknown)[0]!r}; choose from {', '.join(BENCHMARKS)}"
        )
    results = {}
    for name in args.which or BENCHMARKS:
        results[name] = BENCHMARKS[name]()
        _report(name, results[name])
    results["machine"] = {"torch": torch.__version__, "threads": default_threads()}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
