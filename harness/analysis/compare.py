"""Verdicts on two runs: which cases changed, by how much, and how sure we are.

This module matches the cases of two runs (or the two sides of one ``harness ab``
session), reads each metric from their records and picks the evidence each case has:
the pairs of an ab session, fresh processes (``--repeats``), or the pooled samples of one
process a side widened by the runs' machine noise (:mod:`harness.analysis.noise`). The statistics
themselves are in :mod:`harness.analysis.significance`; their q-values are adjusted across cases.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis import sequential
from harness.analysis.noise import MachineNoise, machine_noise, machine_shift, noise_of
from harness.analysis.significance import (
    ALPHA,
    VERDICTS,
    ShiftEstimate,
    Unjudged,
    benjamini_hochberg,
    judge,
    repeated,
    shift_of_pairs,
    shift_of_repeats,
    shift_of_runs,
    shift_of_turns,
    verdict,
)
from harness.errors import CompareError
from harness.sweep.identity import CaseKey

METRICS = ("latency", "throughput", "memory")
DEFAULT_THRESHOLD = 0.05
MEMORY_WORDS = {"slower": "larger", "faster": "smaller"}  # the same verdicts, said of memory


def latest_cases(
    frame: pd.DataFrame | Iterable[Mapping[str, Any]],
) -> dict[CaseKey, list[dict[str, Any]]]:
    """Each case's ok records (one per repeat) from the last run that measured it."""
    rows = frame.to_dict("records") if isinstance(frame, pd.DataFrame) else frame
    cases: dict[CaseKey, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("status") != "ok":
            continue
        key = CaseKey.of_record(row, measured=True)
        if key in cases and cases[key][0].get("run_id") == row.get("run_id"):
            cases[key].append(dict(row))
        else:
            cases[key] = [dict(row)]
    return cases


_SHORT = {"batch_size": "B", "compile_mode": "compile"}  # as a label spells them


@dataclass(frozen=True)
class Matched:
    """One case of each side to compare: the same case of two runs, or the two sides of
    one ab session (whose cases may differ in the options the sides set)."""

    baseline_key: CaseKey
    candidate_key: CaseKey
    baseline: list[dict[str, Any]]
    candidate: list[dict[str, Any]]

    @property
    def label(self) -> str:
        """The candidate's case, and what the baseline's differs in."""
        label = self.candidate_key.label
        differs = []
        for name, b, c in zip(CaseKey._fields, self.baseline_key, self.candidate_key):
            if name == "dims":
                differs += [f"{k}={v}" for k, v in b if (k, v) not in c]
            elif b != c:
                differs.append(f"{_SHORT.get(name, name)}={b}")
        return label + (f" vs {','.join(differs)}" if differs else "")


def matched_cases(
    baseline: pd.DataFrame, candidate: pd.DataFrame
) -> tuple[list[Matched], dict[str, int]]:
    """The cases to compare, and how many cases only one side has.

    The sides of an ab session are matched by their session; a session with a failed
    pair is left out (``harness ab`` reports the failure). Everything else is matched
    by case identity, each case's last run.
    """
    sessions = [_sessions(f) for f in (baseline, candidate)]
    shared = [s for s in sessions[0] if s in sessions[1]]
    matched = []
    for session in shared:
        b, c = sessions[0][session], sessions[1][session]
        if all(r.get("status") == "ok" for r in (*b, *c)):
            matched.append(
                Matched(
                    CaseKey.of_record(b[0], measured=True),
                    CaseKey.of_record(c[0], measured=True),
                    b,
                    c,
                )
            )
    rest = [
        latest_cases(r for r in f.to_dict("records") if r.get("interleaved.session") not in shared)
        for f in (baseline, candidate)
    ]
    matched += [Matched(k, k, rest[0][k], rest[1][k]) for k in rest[0] if k in rest[1]]
    only = {
        "baseline": len(set(rest[0]) - set(rest[1])),
        "candidate": len(set(rest[1]) - set(rest[0])),
    }
    if not matched:
        raise CompareError(_nothing_in_common(rest[0], rest[1]))
    return matched, only


def _sessions(frame: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """Records of ab sessions (any status), by session id."""
    found: dict[str, list[dict[str, Any]]] = {}
    if "interleaved.session" not in frame:
        return found
    for row in frame.to_dict("records"):
        session = row.get("interleaved.session")
        if isinstance(session, str):
            found.setdefault(session, []).append(row)
    return found


def metric_value(rows: Sequence[Mapping[str, Any]], metric: str) -> float | None:
    """The metric over a case's repeats: the median of their values."""
    values = [v for v in (_one_value(r, metric) for r in rows) if v is not None]
    return float(np.median(values)) if values else None


def _one_value(row: Mapping[str, Any], metric: str) -> float | None:
    if metric == "latency":
        return row.get("latency.median")
    if metric == "throughput":
        return row.get("throughput")
    peaks = [row.get(c) for c in ("memory.cuda_max_allocated_bytes", "memory.cpu_peak_rss_bytes")]
    peaks = [p for p in peaks if p is not None and not (isinstance(p, float) and math.isnan(p))]
    return float(peaks[0]) if peaks else None


def metric_samples(row: Mapping[str, Any], metric: str) -> list[float] | None:
    """Per-iteration samples in the metric's own terms; memory has none."""
    samples = row.get("latency.samples")
    if metric == "memory" or not isinstance(samples, list) or len(samples) < 2:
        return None
    if metric == "throughput":
        return [row["batch_size"] / s for s in samples]
    return list(samples)


def estimate(
    base: Sequence[Mapping[str, Any]],
    cand: Sequence[Mapping[str, Any]],
    metric: str,
    noise: Mapping[str, MachineNoise] | None = None,
) -> ShiftEstimate | Unjudged | None:
    """By pairs of processes for the sides of one ``harness ab`` session, turn by turn
    for a one-pair session of an earlier harness; process-level when both sides have
    enough repeats; else the pooled samples widened by the machine noise of each side's
    run (``noise``, by run id), or ``Unjudged`` if it is unknown. None without samples."""
    pairs = session_pairs(base, cand, metric)
    if pairs is not None:
        if not any(isinstance(r.get("interleaved.pair"), int) for r in base):
            return shift_of_turns(*pairs[0]) if len(pairs) == 1 else None
        return shift_of_pairs(pairs)
    xs = [s for s in (metric_samples(r, metric) for r in base) if s]
    ys = [s for s in (metric_samples(r, metric) for r in cand) if s]
    if not (xs and ys):
        return None
    if repeated(xs, ys):
        return shift_of_repeats(xs, ys)
    return shift_of_runs(
        xs, ys, noise_of(base, noise), noise_of(cand, noise), machine_shift(base, cand, noise)
    )


def interleaved_turns(
    base: Sequence[Mapping[str, Any]], cand: Sequence[Mapping[str, Any]], metric: str
) -> tuple[list[list[float]], list[list[float]]] | None:
    """Both sides' samples cut into their turns, if they are the two sides of one
    interleaved pair; else None."""
    if len(base) != 1 or len(cand) != 1:
        return None
    (b,), (c,) = base, cand
    session = b.get("interleaved.session")
    if not isinstance(session, str) or session != c.get("interleaved.session"):
        return None
    sides = []
    for row in (b, c):
        samples, counts = metric_samples(row, metric), row.get("interleaved.turns")
        if not samples or not isinstance(counts, list) or sum(counts) != len(samples):
            return None
        cuts = np.cumsum([0, *counts])
        sides.append([samples[i:j] for i, j in zip(cuts[:-1], cuts[1:])])
    return (sides[0], sides[1]) if len(sides[0]) == len(sides[1]) >= 2 else None


def session_pairs(
    base: Sequence[Mapping[str, Any]], cand: Sequence[Mapping[str, Any]], metric: str
) -> list[tuple[list[list[float]], list[list[float]]]] | None:
    """The turns of each pair of one ab session, in pair order; None unless the records
    are exactly that session's two sides, pair for pair."""

    def by_pair(rows: Sequence[Mapping[str, Any]]) -> dict[Any, Mapping[str, Any]]:
        return {r.get("interleaved.pair"): r for r in rows}

    b, c = by_pair(base), by_pair(cand)
    if not base or len(b) != len(base) or len(c) != len(cand) or set(b) != set(c):
        return None
    pairs = []
    for pair in sorted(b, key=lambda p: p if isinstance(p, int) else -1):
        turns = interleaved_turns([b[pair]], [c[pair]], metric)
        if turns is None:
            return None
        pairs.append(turns)
    return pairs


def compare(
    baseline: pd.DataFrame,
    candidate: pd.DataFrame,
    metric: str = "latency",
    threshold: float = DEFAULT_THRESHOLD,
) -> pd.DataFrame:
    """One row per case in both runs: values, ratio, its CI, p and q, MDE and verdict."""
    if metric not in METRICS:
        raise CompareError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    noise = {**machine_noise(baseline), **machine_noise(candidate)}
    worse_above = metric != "throughput"
    rows = []
    for match in matched_cases(baseline, candidate)[0]:
        b, c, key = match.baseline, match.candidate, match.candidate_key
        row: dict[str, Any] = {
            "case": match.label,
            "model": key.model,
            "batch_size": key.batch_size,
            "device": key.device,
            "dtype": key.dtype,
            "compile_mode": key.compile_mode,
            "mode": key.mode,
            "suite": c[0].get("suite") or b[0].get("suite"),
            "baseline": metric_value(b, metric),
            "candidate": metric_value(c, metric),
            "note": None,
            "samples_verdict": None,
            "baseline_noise": noise_of(b, noise).sd,
            "candidate_noise": noise_of(c, noise).sd,
        }
        est = estimate(b, c, metric, noise)
        if isinstance(est, ShiftEstimate):
            row.update(
                ratio=est.ratio,
                ci_low=bound(est.ci_low),
                ci_high=bound(est.ci_high),
                p_value=est.p_value,
                mde=bound(est.mde),
                method=est.method,
                repeats=(len(b), len(c)),
            )
            if est.method == "pairs":
                took = [r.get("interleaved.case_elapsed_s") for r in c]
                row.update(pairs=len(c), time_s=max((t for t in took if t), default=None))
            if est.within is not None:
                row["samples_verdict"] = judge(est.within, threshold, worse_above)
        elif row["baseline"] and row["candidate"] is not None:
            row.update(
                ratio=row["candidate"] / row["baseline"],
                ci_low=None,
                ci_high=None,
                p_value=None,
                mde=None,
                method=None,
            )
            if est:
                row["note"] = est.reason
        else:
            continue
        for side, records in (("baseline", b), ("candidate", c)):
            row[f"{side}_utilisation"] = _median(r.get("flops.utilisation") for r in records)
            row[f"{side}_memory"] = metric_value(records, "memory")
        rows.append(row)
    table = pd.DataFrame(rows)
    tested = table["p_value"].notna()
    table["q_value"] = None
    if tested.any():
        table.loc[tested, "q_value"] = benjamini_hochberg(table.loc[tested, "p_value"].tolist())
    table["verdict"] = [
        _row_verdict(r, threshold, worse_above, metric) for r in table.to_dict("records")
    ]
    table["regressed"] = table["verdict"] == "slower"
    if metric == "memory":
        table["verdict"] = table["verdict"].replace(MEMORY_WORDS)
    return table


def bound(value: float) -> float | None:
    """``None`` for a bound not yet known: a confidence sequence still open on that side
    (a ratio of 0 or infinity)."""
    return value if math.isfinite(value) and value > 0 else None


def _median(values: Iterable[Any]) -> float | None:
    present = [v for v in values if v is not None and v == v]
    return float(np.median(present)) if present else None


def _row_verdict(row: Mapping[str, Any], threshold: float, worse_above: bool, metric: str) -> str:
    if row["q_value"] is None or (isinstance(row["q_value"], float) and math.isnan(row["q_value"])):
        if metric != "memory":  # a time without an interval tells nothing
            return "inconclusive"
        # a single number per side (memory): the threshold alone decides
        ratio = row["ratio"]
        return verdict(ratio, (ratio, ratio), True, threshold, worse_above)
    if row.get("method") == "pairs":
        return sequential.verdict(
            row["ratio"],
            row["ci_low"],
            row["ci_high"],
            row["q_value"],
            threshold,
            worse_above=worse_above,
        )
    return verdict(
        row["ratio"],
        (row["ci_low"], row["ci_high"]),
        row["q_value"] <= ALPHA,
        threshold,
        worse_above,
    )


def geomean_speedups(
    table: pd.DataFrame,
    by: Sequence[str] = ("suite", "dtype", "compile_mode"),
    metric: str = "latency",
) -> pd.DataFrame:
    """Geometric-mean speedup of candidate over baseline per group (>1: candidate faster)."""
    speed = 1 / table["ratio"] if metric != "throughput" else table["ratio"]
    frame = table.assign(speedup=speed, suite=table["suite"].fillna("-"))
    groups = frame.groupby(list(by), dropna=False)["speedup"]
    result = groups.apply(lambda s: float(np.exp(np.log(s).mean()))).rename("geomean_speedup")
    return pd.concat([result, groups.size().rename("cases")], axis=1).reset_index()


def _nothing_in_common(base: Mapping[CaseKey, Any], cand: Mapping[CaseKey, Any]) -> str:
    if not base or not cand:
        side = "baseline" if not base else "candidate"
        return f"the {side} has no successful cases to compare"
    models = sorted({k.model for k in base} & {k.model for k in cand})
    hint = (
        f"they share models ({', '.join(models[:3])}) but not batch sizes, dims, devices, "
        "dtypes, compile modes or modes"
        if models
        else "they share no models"
    )
    return f"the runs have no cases in common: {hint}"


def summarise(table: pd.DataFrame, metric: str) -> dict[str, int]:
    """Cases per verdict, in a fixed order, in the metric's own words."""
    words = [MEMORY_WORDS.get(v, v) if metric == "memory" else v for v in VERDICTS]
    return {v: int((table["verdict"] == v).sum()) for v in words}


# What a run recorded that moves timings, as loaded columns (``results.load``): its
# isolation and sampling window, the threads its cases used, the versions and numerics
# flags of the code, and the environment variables of thread pools and allocators.
TIMING_SETTINGS = (
    "settings.isolation",
    "threads",
    "settings.min_time",
    "settings.max_time",
    "env.harness_version",
    "env.torch_version",
    "env.triton_version",
    *(
        f"env.torch_settings.{flag}"
        for flag in (
            "float32_matmul_precision",
            "cuda_matmul_allow_tf32",
            "cudnn_allow_tf32",
            "cudnn_benchmark",
            "cudnn_deterministic",
            "deterministic_algorithms",
        )
    ),
)
VARIABLES_COLUMN = "env.environment_variables"
MAX_SETTING_TEXT = 40  # characters of a value shown: values come from files, not from us


@dataclass(frozen=True)
class SettingDifference:
    """A setting that moves timings and on which the two sides of a comparison differ."""

    name: str
    baseline: str
    candidate: str


def _setting_text(value: Any) -> str | None:
    """A recorded value as short plain text; None where it was not recorded."""
    if value is None or isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a column with gaps holds the threads 1 as 1.0
    text = "".join(c if c.isprintable() else "?" for c in str(value))
    return text if len(text) <= MAX_SETTING_TEXT else text[: MAX_SETTING_TEXT - 3] + "..."


def _recorded(frame: pd.DataFrame, column: str) -> list[Any]:
    return list(frame[column]) if column in frame else []


def _side_text(values: Iterable[Any]) -> str | None:
    """The distinct values of one side ("1" or "1/2" over several runs); None if none."""
    texts = sorted({t for t in map(_setting_text, values) if t is not None})
    return "/".join(texts) if texts else None


def settings_differences(
    baseline: pd.DataFrame, candidate: pd.DataFrame
) -> list[SettingDifference]:
    """The settings that move timings on which the two sides differ. A setting one side did
    not record (a file from before it was recorded, an import) is unknown, not different;
    an environment variable one side did not set is "unset" when both recorded theirs."""
    found = []
    for column in TIMING_SETTINGS:
        base, cand = (_side_text(_recorded(f, column)) for f in (baseline, candidate))
        if base is not None and cand is not None and base != cand:
            found.append(SettingDifference(column.rpartition(".")[2], base, cand))
    sides = [
        [v for v in _recorded(f, VARIABLES_COLUMN) if isinstance(v, Mapping)]
        for f in (baseline, candidate)
    ]
    if all(sides):
        for name in sorted({str(n) for side in sides for v in side for n in v}):
            base, cand = (_side_text(v.get(name) for v in side) or "unset" for side in sides)
            if base != cand:
                found.append(SettingDifference(_setting_text(name) or "?", base, cand))
    return found
