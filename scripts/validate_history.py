"""How well does `harness history` find steps in a series of runs, next to asv's step detection?

    python scripts/validate_history.py [--seed 0] [--series 40] [--threshold 5%] [--json PATH]

Synthetic series with known steps, modelled on this shared machine: each series is
40 runs of 30 samples; each run's level wanders by a run-to-run noise (0.5 %, 2 % or
4 %), its samples scatter by 3 % with a heavy tail, and in half the scenarios 5 % of
runs land in a slow spell (every sample 20-60 % slower: an outlier run). Each series has
0-3 steps of 5-20 %, up or down, with at least four runs between steps and from either
end. Both detectors see the same series:

* harness: ``history.detect`` on the medians and raw samples;
* asv steps: ``asv.step_detect.detect_steps`` on the medians, weighted as ``asv publish``
  weights them (``2 / |ci_99_b - ci_99_a|`` from asv's own ``compute_stats`` of the
  samples); every segment boundary is a step. Two variants: unweighted, and keeping
  only boundaries whose levels differ by at least the threshold. The best of the three
  is the bar;
* asv regressions: ``detect_regressions`` on those steps with the threshold, against
  the upward steps only (and harness's "slower" steps).

A detected step within one run of a true one is a hit (each true step is hit once).
F1 = 2 hits / (detected + true), pooled over all series. Needs asv (the dev extra).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from asv._stats import get_weight
from asv.step_detect import detect_regressions, detect_steps
from asv_runner.statistics import compute_stats

from harness import history
from harness.compare import DEFAULT_THRESHOLD

RUNS, SAMPLES = 40, 30
RUN_NOISE = (0.005, 0.02, 0.04)
OUTLIER_RATES = (0.0, 0.05)
SAMPLE_NOISE = 0.03
OUTLIER_SLOWDOWN = (1.2, 1.6)
STEP_SIZES = (0.05, 0.20)
MIN_GAP = 4
DETECTORS = ("harness", "asv steps", "asv steps unweighted", "asv steps >= threshold",
             "harness slower", "asv regressions")
ASV_STEPS = ("asv steps", "asv steps unweighted", "asv steps >= threshold")


@dataclass(frozen=True)
class Synthetic:
    medians: list[float]
    samples: list[list[float]]
    steps: list[int]  # index of the first run at each new level
    regressions: list[int]  # the upward ones


def synthetic(rng: np.random.Generator, run_noise: float, outlier_rate: float) -> Synthetic:
    count = int(rng.integers(0, 4))
    while True:
        steps = sorted(rng.choice(np.arange(MIN_GAP, RUNS - MIN_GAP + 1), count, replace=False))
        if all(b - a >= MIN_GAP for a, b in zip(steps, steps[1:])):
            break
    factors = [rng.uniform(*STEP_SIZES) * rng.choice([-1, 1]) for _ in steps]
    level = np.zeros(RUNS)
    for at, change in zip(steps, factors):
        level[at:] += math.log1p(change)
    medians, samples = [], []
    for i in range(RUNS):
        centre = 1e-3 * math.exp(level[i] + rng.normal(0, run_noise))
        if rng.random() < outlier_rate:
            centre *= rng.uniform(*OUTLIER_SLOWDOWN)
        draw = centre * rng.lognormal(0, SAMPLE_NOISE, SAMPLES)
        tail = rng.random(SAMPLES) < 0.05
        draw[tail] *= 1 + rng.exponential(0.3, tail.sum())
        samples.append(draw.tolist())
        medians.append(float(np.median(draw)))
    return Synthetic(medians, samples, [int(s) for s in steps],
                     [int(s) for s, f in zip(steps, factors) if f > 0])


def _series(data: Synthetic) -> history.Series:
    runs = [history.Run("synthetic", str(i), None, None, None, None) for i in range(RUNS)]
    points = tuple(history.Point(run, m, (tuple(s),))
                   for run, m, s in zip(runs, data.medians, data.samples))
    return history.Series(("synthetic",), "synthetic", points)


def asv_steps(data: Synthetic, weighted: bool = True
              ) -> list[tuple[int, int, float, float, float]]:
    weights = [get_weight(compute_stats(s, 1)[1]) for s in data.samples] if weighted else None
    return detect_steps(data.medians, weights)


def _boundaries(segments: Sequence[tuple[int, int, float, float, float]]
                ) -> list[tuple[int, float, float]]:
    """(first index, level before, level after) of each boundary between segments."""
    return [(right[0], left[2], right[2]) for left, right in zip(segments, segments[1:])]


def found(data: Synthetic, threshold: float) -> dict[str, list[int]]:
    """Each detector's step positions on one series."""
    steps = history.detect([_series(data)], threshold=threshold)
    segments = asv_steps(data)
    boundaries = _boundaries(segments)
    _, _, jumps = detect_regressions(segments, threshold)
    return {"harness": [s.index for s in steps],
            "asv steps": [at for at, _, _ in boundaries],
            "asv steps unweighted": [at for at, _, _ in _boundaries(asv_steps(data, False))],
            "asv steps >= threshold": [at for at, a, b in boundaries
                                       if max(a, b) / min(a, b) >= 1 + threshold],
            "harness slower": [s.index for s in steps if s.verdict == "slower"],
            "asv regressions": [after for _, after, _, _ in jumps or []]}


def hits(truth: Sequence[int], detected: Sequence[int], tolerance: int = 1) -> int:
    """True steps matched one-to-one by a detection within ``tolerance`` runs."""
    free = sorted(detected)
    count = 0
    for at in truth:
        near = [d for d in free if abs(d - at) <= tolerance]
        if near:
            free.remove(min(near, key=lambda d: abs(d - at)))
            count += 1
    return count


def benchmark(seed: int = 0, series: int = 20, threshold: float = DEFAULT_THRESHOLD
              ) -> dict[str, dict[str, dict[str, int]]]:
    """Per scenario (run noise, outlier rate) and detector: true steps, detections, hits."""
    rng = np.random.default_rng(seed)
    table: dict[str, dict[str, dict[str, int]]] = {}
    for noise, outliers in itertools.product(RUN_NOISE, OUTLIER_RATES):
        counts = {d: {"true": 0, "detected": 0, "hits": 0} for d in DETECTORS}
        for _ in range(series):
            data = synthetic(rng, noise, outliers)
            for detector, positions in found(data, threshold).items():
                truth = data.regressions if detector in ("harness slower", "asv regressions") \
                    else data.steps
                counts[detector]["true"] += len(truth)
                counts[detector]["detected"] += len(positions)
                counts[detector]["hits"] += hits(truth, positions)
        table[f"{noise:.1%}/{outliers:.0%}"] = counts
    return table


def f1(counts: dict[str, int]) -> float:
    total = counts["true"] + counts["detected"]
    return 2 * counts["hits"] / total if total else 1.0


def pooled(table: dict[str, dict[str, dict[str, int]]], detector: str) -> dict[str, int]:
    return {field: sum(level[detector][field] for level in table.values())
            for field in ("true", "detected", "hits")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--series", type=int, default=20, help="series per scenario")
    parser.add_argument("--threshold", type=lambda t: float(t.rstrip("%")) / 100,
                        default=f"{DEFAULT_THRESHOLD:.0%}", help="in percent (default 5%%)")
    parser.add_argument("--json", type=Path, metavar="PATH")
    args = parser.parse_args()
    table = benchmark(args.seed, args.series, args.threshold)
    print(f"{'noise/outl':>10} {'detector':<24} {'true':>5} {'found':>6} {'hits':>5} "
          f"{'precision':>9} {'recall':>7} {'F1':>6}")
    for level, counts in [*table.items(), ("all", {d: pooled(table, d) for d in DETECTORS})]:
        for detector in DETECTORS:
            c = counts[detector]
            precision = c["hits"] / c["detected"] if c["detected"] else 1.0
            recall = c["hits"] / c["true"] if c["true"] else 1.0
            print(f"{level:>10} {detector:<24} {c['true']:>5} {c['detected']:>6} "
                  f"{c['hits']:>5} {precision:>9.3f} {recall:>7.3f} {f1(c):>6.3f}")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
