"""How well does `harness history` find steps in a series of runs: years of nightly runs,
and short series next to asv's step detection.

    python scripts/validate_history.py years [--seed 0] [--years 6] [--dense-years 5]
        [--noise 2%] [--scatter 1%] [--threshold 5%] [--nights 365] [--json PATH]
    python scripts/validate_history.py asv [--seed 0] [--series 20] [--threshold 5%]
        [--json PATH]

**years** (the goals of `history`: no false regression in years of pure noise, and a
step of the threshold's size found at its night). A year is ``CASES`` cases of
``--nights`` nightly runs of ``SAMPLES`` samples each, judged by one ``history.detect``
(q-values across the year's cases, as `harness history` over a year's results gives
them). Each night's samples are scaled by a night factor (the night-to-night noise,
``--noise``) and scatter inside the run by ``--scatter`` with a heavy tail. ``--years``
years have one case with a step of ``--threshold`` (as the year in which the version
judged on samples found a false regression), ``--dense-years`` have ``DENSE``, slower
and faster in turn; a step lands at a night drawn uniformly at least ``EDGE`` from
either end. Three kinds of night factor, each on fresh years:

* gaussian: log-normal with sd ``--noise``;
* heavy-tailed: Student's t with 3 degrees of freedom, scaled to the same sd;
* outlier nights: gaussian, and ``OUTLIER_NIGHTS`` of the nights a case runs 20-60 %
  slower (a slow spell of the machine).

A false regression is a "slower" step in a pure-noise case (a false improvement, a
"faster" one); a step is found when a step of its direction is reported within one
night of it. For the steps found: their level ratios (median), the width of their
intervals (median), and how often the interval holds the true ratio.

**asv** (short series, against ``asv.step_detect``). Modelled on this shared machine:
each series is 40 runs of 30 samples; each run's level wanders by a run-to-run noise
(0.5 %, 2 % or 4 %), its samples scatter as above, and in half the scenarios 5 % of runs
land in a slow spell (an outlier run). Each series has 0-3 steps of 5-20 %, up or down,
with at least four runs between steps and from either end. Both detectors see the same
series:

* harness: ``history.detect`` on the runs;
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

from harness.analysis import history
from harness.analysis.compare import DEFAULT_THRESHOLD

SAMPLE_NOISE = 0.03
OUTLIER_SLOWDOWN = (1.2, 1.6)
# years
NIGHTS, CASES, SAMPLES = 365, 200, 30
DENSE = 50  # stepped cases of a year where the steps are counted
EDGE = 7  # nights between an injected step and either end of the year
NIGHT_KINDS = ("gaussian", "heavy-tailed", "outlier nights")
HEAVY_DF = 3
OUTLIER_NIGHTS = 0.02
# asv
RUNS, RUN_SAMPLES = 40, 30
RUN_NOISE = (0.005, 0.02, 0.04)
OUTLIER_RATES = (0.0, 0.05)
STEP_SIZES = (0.05, 0.20)
MIN_GAP = 4
DETECTORS = (
    "harness",
    "asv steps",
    "asv steps unweighted",
    "asv steps >= threshold",
    "harness slower",
    "asv regressions",
)
ASV_STEPS = ("asv steps", "asv steps unweighted", "asv steps >= threshold")


def run_samples(
    rng: np.random.Generator, centre: float, count: int, scatter: float = SAMPLE_NOISE
) -> list[float]:
    """One run's samples around ``centre``: log-normal ``scatter``, 5 % of them in a tail."""
    draw = centre * rng.lognormal(0, scatter, count)
    tail = rng.random(count) < 0.05
    draw[tail] *= 1 + rng.exponential(0.3, tail.sum())
    return draw.tolist()


def as_series(samples: Sequence[Sequence[float]], name: str = "synthetic") -> history.Series:
    """One point per run, its value the median of its samples."""
    points = tuple(
        history.Point(
            history.Run(name, str(i), None, None, None, None), float(np.median(s)), (tuple(s),)
        )
        for i, s in enumerate(samples)
    )
    return history.Series((name,), name, points)


# ---- years --------------------------------------------------------------------------


@dataclass(frozen=True)
class Year:
    """One case's year: samples per night, and its step (None for pure noise)."""

    samples: list[list[float]]
    step: int | None  # the first night at the new level
    ratio: float  # of the step


def night_factors(rng: np.random.Generator, kind: str, noise: float, nights: int) -> np.ndarray:
    """Log factors by which each night's samples are scaled."""
    if kind == "heavy-tailed":
        return noise * rng.standard_t(HEAVY_DF, nights) / math.sqrt(HEAVY_DF / (HEAVY_DF - 2))
    factors = rng.normal(0, noise, nights)
    if kind == "outlier nights":
        slow = rng.random(nights) < OUTLIER_NIGHTS
        factors[slow] += np.log(rng.uniform(*OUTLIER_SLOWDOWN, slow.sum()))
    return factors


def year(
    rng: np.random.Generator,
    kind: str,
    noise: float,
    scatter: float,
    nights: int,
    step: int | None,
    ratio: float,
) -> Year:
    level = np.log(1e-4) + rng.uniform(0, np.log(1000)) + night_factors(rng, kind, noise, nights)
    if step is not None:
        level[step:] += math.log(ratio)
    return Year([run_samples(rng, math.exp(c), SAMPLES, scatter) for c in level], step, ratio)


def years(
    rng: np.random.Generator, args: argparse.Namespace, kind: str, count: int, stepped: int
) -> dict[str, float]:
    """``count`` years of ``CASES`` cases, ``stepped`` of them with a step (slower and
    faster in turn, at a night drawn at least ``EDGE`` from either end), each year judged
    by one ``history.detect``: false steps in the pure-noise cases, steps found at their
    night (within one), and the level ratios and intervals of those found."""
    counts = {
        "noise series": 0,
        "false regressions": 0,
        "false improvements": 0,
        "step series": 0,
        "found": 0,
        "elsewhere": 0,
        "covered": 0,
    }
    ratios, widths = [], []
    for _ in range(count):
        cases = [
            year(rng, kind, args.noise, args.scatter, args.nights, None, 1.0)
            for _ in range(CASES - stepped)
        ]
        cases += [
            year(
                rng,
                kind,
                args.noise,
                args.scatter,
                args.nights,
                int(rng.integers(EDGE, args.nights - EDGE + 1)),
                (1 + args.threshold) ** (1 - 2 * (i % 2)),
            )
            for i in range(stepped)
        ]
        found = history.detect(
            [as_series(c.samples, f"case{i}") for i, c in enumerate(cases)],
            threshold=args.threshold,
        )
        for i, case in enumerate(cases):
            mine = [s for s in found if s.key == (f"case{i}",)]
            if case.step is None:
                counts["noise series"] += 1
                counts["false regressions"] += sum(s.verdict == "slower" for s in mine)
                counts["false improvements"] += sum(s.verdict == "faster" for s in mine)
                continue
            right = "slower" if case.ratio > 1 else "faster"
            hit = [s for s in mine if abs(s.index - case.step) <= 1 and s.verdict == right]
            counts["step series"] += 1
            counts["found"] += bool(hit)
            counts["elsewhere"] += len(mine) - bool(hit)
            if hit:
                counts["covered"] += hit[0].ci_low <= case.ratio <= hit[0].ci_high
                ratios.append(hit[0].ratio ** (1 if case.ratio > 1 else -1))
                widths.append(hit[0].ci_high / hit[0].ci_low - 1)
    return {
        **counts,
        "median level ratio": float(np.median(ratios)) if ratios else math.nan,
        "median CI width": float(np.median(widths)) if widths else math.nan,
    }


def report_years(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(args.seed)
    table = {
        f"{kind}, {mix}": years(rng, args, kind, count, stepped)
        for kind in NIGHT_KINDS
        for mix, count, stepped in (
            ("1 step a year", args.years, 1),
            (f"{DENSE} steps a year", args.dense_years, DENSE),
        )
    }
    print(
        f"{args.nights} nights of {SAMPLES} samples scattered by {args.scatter:.1%}, "
        f"night-to-night noise {args.noise:.1%}, steps of {args.threshold:.1%} at a "
        f"{args.threshold:.1%} threshold, {CASES} cases a year, seed {args.seed}"
    )
    print(
        f"{'night factor, steps':<30} {'noise':>6} {'false reg':>9} {'false imp':>9} "
        f"{'steps':>6} {'found':>6} {'%':>6} {'other':>6} {'ratio':>6} {'CI width':>8} "
        f"{'covered':>7}"
    )
    for name, c in table.items():
        share = c["found"] / c["step series"] if c["step series"] else math.nan
        covered = c["covered"] / c["found"] if c["found"] else math.nan
        print(
            f"{name:<30} {c['noise series']:>6} {c['false regressions']:>9} "
            f"{c['false improvements']:>9} {c['step series']:>6} {c['found']:>6} "
            f"{share:>6.1%} {c['elsewhere']:>6} {c['median level ratio']:>6.3f} "
            f"{c['median CI width']:>8.2%} {covered:>7.1%}"
        )
    return table


# ---- against asv --------------------------------------------------------------------


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
    samples = []
    for i in range(RUNS):
        centre = 1e-3 * math.exp(level[i] + rng.normal(0, run_noise))
        if rng.random() < outlier_rate:
            centre *= rng.uniform(*OUTLIER_SLOWDOWN)
        samples.append(run_samples(rng, centre, RUN_SAMPLES))
    return Synthetic(
        [float(np.median(s)) for s in samples],
        samples,
        [int(s) for s in steps],
        [int(s) for s, f in zip(steps, factors) if f > 0],
    )


def asv_steps(data: Synthetic, weighted: bool = True) -> list[tuple[int, int, float, float, float]]:
    from asv._stats import get_weight
    from asv.step_detect import detect_steps
    from asv_runner.statistics import compute_stats

    weights = [get_weight(compute_stats(s, 1)[1]) for s in data.samples] if weighted else None
    return detect_steps(data.medians, weights)


def _boundaries(
    segments: Sequence[tuple[int, int, float, float, float]],
) -> list[tuple[int, float, float]]:
    """(first index, level before, level after) of each boundary between segments."""
    return [(right[0], left[2], right[2]) for left, right in zip(segments, segments[1:])]


def found(data: Synthetic, threshold: float) -> dict[str, list[int]]:
    """Each detector's step positions on one series."""
    from asv.step_detect import detect_regressions

    steps = history.detect([as_series(data.samples)], threshold=threshold)
    segments = asv_steps(data)
    boundaries = _boundaries(segments)
    _, _, jumps = detect_regressions(segments, threshold)
    return {
        "harness": [s.index for s in steps],
        "asv steps": [at for at, _, _ in boundaries],
        "asv steps unweighted": [at for at, _, _ in _boundaries(asv_steps(data, False))],
        "asv steps >= threshold": [
            at for at, a, b in boundaries if max(a, b) / min(a, b) >= 1 + threshold
        ],
        "harness slower": [s.index for s in steps if s.verdict == "slower"],
        "asv regressions": [after for _, after, _, _ in jumps or []],
    }


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


def benchmark(
    seed: int = 0, series: int = 20, threshold: float = DEFAULT_THRESHOLD
) -> dict[str, dict[str, dict[str, int]]]:
    """Per scenario (run noise, outlier rate) and detector: true steps, detections, hits."""
    rng = np.random.default_rng(seed)
    table: dict[str, dict[str, dict[str, int]]] = {}
    for noise, outliers in itertools.product(RUN_NOISE, OUTLIER_RATES):
        counts = {d: {"true": 0, "detected": 0, "hits": 0} for d in DETECTORS}
        for _ in range(series):
            data = synthetic(rng, noise, outliers)
            for detector, positions in found(data, threshold).items():
                truth = (
                    data.regressions
                    if detector in ("harness slower", "asv regressions")
                    else data.steps
                )
                counts[detector]["true"] += len(truth)
                counts[detector]["detected"] += len(positions)
                counts[detector]["hits"] += hits(truth, positions)
        table[f"{noise:.1%}/{outliers:.0%}"] = counts
    return table


def f1(counts: dict[str, int]) -> float:
    total = counts["true"] + counts["detected"]
    return 2 * counts["hits"] / total if total else 1.0


def pooled(table: dict[str, dict[str, dict[str, int]]], detector: str) -> dict[str, int]:
    return {
        field: sum(level[detector][field] for level in table.values())
        for field in ("true", "detected", "hits")
    }


def report_asv(args: argparse.Namespace) -> dict[str, dict[str, dict[str, int]]]:
    table = benchmark(args.seed, args.series, args.threshold)
    print(
        f"{'noise/outl':>10} {'detector':<24} {'true':>5} {'found':>6} {'hits':>5} "
        f"{'precision':>9} {'recall':>7} {'F1':>6}"
    )
    for level, counts in [*table.items(), ("all", {d: pooled(table, d) for d in DETECTORS})]:
        for detector in DETECTORS:
            c = counts[detector]
            precision = c["hits"] / c["detected"] if c["detected"] else 1.0
            recall = c["hits"] / c["true"] if c["true"] else 1.0
            print(
                f"{level:>10} {detector:<24} {c['true']:>5} {c['detected']:>6} "
                f"{c['hits']:>5} {precision:>9.3f} {recall:>7.3f} {f1(c):>6.3f}"
            )
    return table


def percent(text: str) -> float:
    return float(text.rstrip("%")) / 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--seed", type=int, default=0)
    common.add_argument(
        "--threshold",
        type=percent,
        default=f"{DEFAULT_THRESHOLD:.0%}",
        help="in percent (default 5%%); in years, also the steps' size",
    )
    common.add_argument("--json", type=Path, metavar="PATH")
    modes = parser.add_subparsers(dest="mode", required=True)
    year_mode = modes.add_parser("years", parents=[common], help="years of nightly runs")
    year_mode.add_argument(
        "--years", type=int, default=6, help="years with one step (199 pure-noise cases each)"
    )
    year_mode.add_argument("--dense-years", type=int, default=5, help=f"years with {DENSE} steps")
    year_mode.add_argument(
        "--noise", type=percent, default="2%", help="night-to-night noise, in percent (default 2%%)"
    )
    year_mode.add_argument(
        "--scatter",
        type=percent,
        default="1%",
        help="of the samples inside a run, in percent (default 1%%)",
    )
    year_mode.add_argument("--nights", type=int, default=NIGHTS)
    year_mode.set_defaults(report=report_years)
    asv_mode = modes.add_parser(
        "asv", parents=[common], help="40-run series against asv's step detection"
    )
    asv_mode.add_argument("--series", type=int, default=20, help="series per scenario")
    asv_mode.set_defaults(report=report_asv)
    args = parser.parse_args()
    table = args.report(args)
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
