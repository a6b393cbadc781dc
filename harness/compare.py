"""Verdicts on two runs: which cases changed, by how much, and how sure we are.

Each matched case is judged on its raw samples (per-iteration block times), not on
two summary numbers. Timings are skewed and heavy-tailed, so the test is
distribution-free: the change is estimated by the Hodges-Lehmann estimator of the
shift between log-times (the median of all pairwise log-ratios, so a ratio), its 95 %
interval comes from the Mann-Whitney distribution, and its p-value from the
Mann-Whitney U test. Across many cases the p-values are adjusted by Benjamini-Hochberg,
so a suite of 100 unchanged cases does not yield five false alarms at 5 %.

When both runs measured a case in several fresh processes (``harness run
--repeats``), the unit of evidence is the process, not the sample: a process can land
slow as a whole (memory placement, a busy sibling core), and samples within it cannot
show that. The ratio is then that of the lower quartiles of the per-process medians,
and its interval and p-value come from a bootstrap over processes. The lower quartile
because interference on a shared machine only ever adds time: the faster processes
are the less disturbed, and a quartile still cannot be set by one odd process.

The two sides of one ``harness ab`` session were timed turn about (``interleave``):
then each turn of the candidate is paired with the baseline's turn beside it, and the
ratio is the Hodges-Lehmann estimate of the per-turn log-ratios of medians with the
Wilcoxon signed-rank interval and p-value, so the machine's drift cancels.

With fewer processes than that a side (one, usually), the samples cannot see how the
machine's speed differs between the two runs, so the interval of their shift is widened
by it: each case record carries heartbeats (``timing.heartbeat``, a fixed reference
workload timed before and after the case). Their robust spread over a run is that run's
machine noise (around one case, the spread of its own heartbeats if larger), scaled
from the heartbeat's short window to the case's longer one; the difference of the two
runs' median heartbeats is a shift of the whole machine that every case shares. The
log-ratio's variance is the samples' own plus each side's noise and a placement floor,
divided by its processes, plus that shift squared, with Student's t and Satterthwaite's
degrees of freedom. A run without enough heartbeats (an older file, an import) leaves
such a case ``inconclusive``, saying why.

A change must be both significant and at least ``threshold`` to count: a tiny but
"significant" change is not what anyone gates a merge on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from harness import sequential
from harness.errors import CompareError
from harness.plan import case_key_of_record
from harness.results import environment_of
from harness.stats import t_quantile, t_tail, z_quantile
from harness.timing import HEARTBEAT_BLOCKS, HEARTBEAT_PRODUCTS

METRICS = ("latency", "throughput", "memory")
ALPHA = 0.05
POWER = 0.8
DEFAULT_THRESHOLD = 0.05
MIN_REPEATS = 5  # per side; with fewer the bootstrap over processes under-covers
BOOTSTRAP_RESAMPLES = 4000
PROCESS_QUANTILE = 0.25  # of per-process medians: see the module docstring
# Machine noise: 1.4826 MAD of a run's log heartbeats estimates their sd; with fewer than
# MIN_HEARTBEATS (three cases) it is unknown. The MAD is 37 % as efficient as the sd for
# normal data, so n heartbeats are worth 0.37 n degrees of freedom (Satterthwaite).
MIN_HEARTBEATS = 6
MAD_TO_SD = 1.4826
MAD_EFFICIENCY = 0.3675
# The machine's speed wanders less over longer windows: on this VM the sd of window
# medians fell as T^-0.11 (one process: 10.4 % at 0.03 s, 6 % at 4 s; 20 ms heartbeats
# 6.5 % and 1 s windows 4.2 %), so a case sampled for T seconds sees its run's heartbeat
# spread times (T / heartbeat window)^-0.11 (0.65 for 1 s).
DRIFT_EXPONENT = 0.11
# Fresh processes of identical code differ as a whole even on a quiet machine (memory
# placement, the vCPU they mostly run on), which a heartbeat timed in the same process
# need not see: on this VM a process lands 5-30 % slow about one time in five, a per-
# process sd of sqrt(0.2 * E[U(0.05, 0.3)^2]) = 8.5 %. scripts/validate_runs.py met one
# (a gan case 30 % slow, its heartbeats normal); a 1 % floor let 3 of 200 A/A
# comparisons cry wolf, 3 % let 2 of another 200.
PLACEMENT_SD = 0.085
_Z_ALPHA = z_quantile(1 - ALPHA)  # two-sided
_Z_POWER = z_quantile(2 * POWER - 1)  # one-sided quantile at POWER
# A run whose median CI half-width is p (relative) compared with a like run can detect
# about this multiple of p: the two standard errors add in quadrature.
MDE_PER_PRECISION = (_Z_ALPHA + _Z_POWER) * math.sqrt(2) / _Z_ALPHA

KEY_COLUMNS = ("model", "batch_size", "dims", "device", "dtype", "precision", "compile_mode",
               "backend", "mode")
VERDICTS = ("slower", "faster", "no change", "inconclusive")
# The unit of evidence of an estimate: pooled samples, the pooled samples of separate
# runs widened by their machine noise (one process a side), fresh processes (--repeats),
# the turns of one interleaved pair (harness ab before pairs), or independent pairs
# judged by a confidence sequence (harness ab).
METHODS = ("samples", "runs", "processes", "turns", "pairs")
MEMORY_WORDS = {"slower": "larger", "faster": "smaller"}  # the same verdicts, said of memory


@dataclass(frozen=True)
class ShiftEstimate:
    """Candidate over baseline as a ratio, with its 95 % interval and p-value."""

    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    mde: float  # smallest relative change these samples detect with 80 % power
    method: str = "samples"  # what the evidence is: see METHODS
    within: ShiftEstimate | None = None  # the samples' own, where run noise widened it

    def __repr__(self) -> str:
        return (f"ShiftEstimate(ratio={self.ratio:.4f}, ci=[{self.ci_low:.4f}, "
                f"{self.ci_high:.4f}], p={self.p_value:.3g}, mde={self.mde:.2%}, "
                f"{self.method})")


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def shift(baseline: Sequence[float], candidate: Sequence[float]) -> ShiftEstimate:
    """Hodges-Lehmann ratio of ``candidate`` to ``baseline`` samples, with Mann-Whitney
    interval and p-value (normal approximation with tie correction)."""
    x = np.log(np.asarray(baseline, dtype=float))
    y = np.log(np.asarray(candidate, dtype=float))
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError("a shift needs at least two samples on each side")
    diffs = np.sort((y[:, None] - x[None, :]).ravel())
    estimate = float(np.median(diffs))
    # Mann-Whitney U of y over x, ties counted half, and its null variance with ties.
    ranks = pd.Series(np.concatenate([x, y])).rank().to_numpy()
    u = ranks[n:].sum() - m * (m + 1) / 2
    _, counts = np.unique(np.concatenate([x, y]), return_counts=True)
    tie = (counts**3 - counts).sum() / ((n + m) * (n + m - 1))
    sd = math.sqrt(n * m / 12 * ((n + m + 1) - tie))
    z = (abs(u - n * m / 2) - 0.5) / sd if sd else 0.0
    p_value = min(1.0, 2 * _normal_sf(max(z, 0.0)))
    # The interval's ends are order statistics of the pairwise differences.
    k = round(n * m / 2 - _Z_ALPHA * sd) - 1  # the 1-based rank, made 0-based
    k = min(max(k, 0), (n * m - 1) // 2)
    return _estimate(estimate, float(diffs[k]), float(diffs[n * m - 1 - k]), p_value)


def _estimate(log_ratio: float, low: float, high: float, p_value: float,
              method: str = "samples", within: ShiftEstimate | None = None) -> ShiftEstimate:
    se = (high - low) / (2 * _Z_ALPHA)
    return ShiftEstimate(math.exp(log_ratio), math.exp(low), math.exp(high), p_value,
                         math.expm1((_Z_ALPHA + _Z_POWER) * se), method, within)


def shift_of_repeats(baseline: Sequence[Sequence[float]], candidate: Sequence[Sequence[float]],
                     resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> ShiftEstimate:
    """Ratio of the lower quartiles of per-process medians, bootstrapped over processes."""
    a = np.log([np.median(r) for r in baseline])
    b = np.log([np.median(r) for r in candidate])
    if len(a) < 2 or len(b) < 2:
        raise ValueError("a shift of repeats needs at least two processes on each side")
    rng = np.random.default_rng(seed)

    def level(x: np.ndarray) -> np.ndarray:
        return np.quantile(x, PROCESS_QUANTILE, axis=-1)

    boot = (level(b[rng.integers(0, len(b), (resamples, len(b)))])
            - level(a[rng.integers(0, len(a), (resamples, len(a)))]))
    low, high = np.quantile(boot, [ALPHA / 2, 1 - ALPHA / 2])
    tail = min((boot <= 0).sum(), (boot >= 0).sum())
    p_value = min(1.0, 2 * (tail + 1) / (resamples + 1))
    return _estimate(float(level(b) - level(a)), float(low), float(high), p_value, "processes")


def shift_of_turns(baseline: Sequence[Sequence[float]], candidate: Sequence[Sequence[float]]
                   ) -> ShiftEstimate:
    """Samples of an interleaved session (``harness ab``) grouped by turn: the
    Hodges-Lehmann estimate of the per-turn log-ratios of medians, with the Wilcoxon
    signed-rank interval and p-value (normal approximation with tie correction)."""
    if len(baseline) != len(candidate) or len(baseline) < 2:
        raise ValueError("a shift of turns needs the same number (at least two) of turns")
    d = (np.log([np.median(t) for t in candidate]) - np.log([np.median(t) for t in baseline]))
    n = len(d)
    upper = np.triu_indices(n)
    walsh = np.sort(((d[:, None] + d[None, :]) / 2)[upper])
    nonzero = d[d != 0]
    ranks = pd.Series(np.abs(nonzero)).rank().to_numpy()
    m = len(nonzero)
    _, counts = np.unique(np.abs(nonzero), return_counts=True)
    sd = math.sqrt(m * (m + 1) * (2 * m + 1) / 24 - (counts**3 - counts).sum() / 48)
    w_plus = ranks[nonzero > 0].sum()
    z = (abs(w_plus - m * (m + 1) / 4) - 0.5) / sd if sd else 0.0
    p_value = min(1.0, 2 * _normal_sf(max(z, 0.0)))
    k = round(len(walsh) / 2 - _Z_ALPHA * math.sqrt(n * (n + 1) * (2 * n + 1) / 24)) - 1
    k = min(max(k, 0), (len(walsh) - 1) // 2)
    return _estimate(float(np.median(walsh)), float(walsh[k]), float(walsh[len(walsh) - 1 - k]),
                     p_value, "turns")


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Adjusted p-values (q-values) controlling the false discovery rate."""
    count = len(p_values)
    order = sorted(range(count), key=lambda i: p_values[i])
    adjusted = [0.0] * count
    running = 1.0
    for rank in range(count, 0, -1):
        i = order[rank - 1]
        running = min(running, p_values[i] * count / rank)
        adjusted[i] = running
    return adjusted


def verdict(ratio: float, ci: tuple[float, float], significant: bool, threshold: float,
            worse_above: bool) -> str:
    """``slower``/``faster`` when significant and at least ``threshold``; ``no change``
    when the interval rules out a change of ``threshold``; else ``inconclusive``.

    ``ratio`` is candidate over baseline of the metric; ``worse_above`` says whether a
    larger value is worse (latency, memory) or better (throughput).
    """
    bound = 1 + threshold
    if significant and (ratio >= bound or ratio <= 1 / bound):
        return "slower" if (ratio > 1) == worse_above else "faster"
    if 1 / bound < ci[0] and ci[1] < bound:
        return "no change"
    return "inconclusive"


def case_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """A case's identity across runs: its record's key at the batch size actually
    measured (``auto`` included), without the repeat."""
    return case_key_of_record({**row, "batch_size": int(row["batch_size"]),
                               "batch_search": None})[:-1]


def case_label(key: tuple[Any, ...]) -> str:
    model, batch, dims, device, dtype, precision, compile_mode, backend, mode = key
    parts = [f"B={batch}", *(f"{k}={v}" for k, v in dims)]
    parts += [v for v, default in ((device, "cpu"), (dtype, "float32"), (mode, "infer"))
              if v != default]
    if precision != "cast":
        parts.append(precision)
    if compile_mode != "none":
        parts.append(f"compile={compile_mode}" + (f"/{backend}" if backend != "inductor" else ""))
    return f"{model}[{','.join(parts)}]"


def latest_cases(frame: pd.DataFrame | Iterable[Mapping[str, Any]]
                 ) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """Each case's ok records (one per repeat) from the last run that measured it."""
    rows = frame.to_dict("records") if isinstance(frame, pd.DataFrame) else frame
    cases: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("status") != "ok":
            continue
        key = case_key(row)
        if key in cases and cases[key][0].get("run_id") == row.get("run_id"):
            cases[key].append(dict(row))
        else:
            cases[key] = [dict(row)]
    return cases


@dataclass(frozen=True)
class Matched:
    """One case of each side to compare: the same case of two runs, or the two sides of
    one ab session (whose cases may differ in the options the sides set)."""

    baseline_key: tuple[Any, ...]
    candidate_key: tuple[Any, ...]
    baseline: list[dict[str, Any]]
    candidate: list[dict[str, Any]]

    @property
    def label(self) -> str:
        """The candidate's case, and what the baseline's differs in."""
        label = case_label(self.candidate_key)
        names = ("model", "B", "dims", "device", "dtype", "precision", "compile", "backend",
                 "mode")
        differs = []
        for name, b, c in zip(names, self.baseline_key, self.candidate_key):
            if name == "dims":
                differs += [f"{k}={v}" for k, v in b if (k, v) not in c]
            elif b != c:
                differs.append(f"{name}={b}")
        return label + (f" vs {','.join(differs)}" if differs else "")


def matched_cases(baseline: pd.DataFrame, candidate: pd.DataFrame
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
            matched.append(Matched(case_key(b[0]), case_key(c[0]), b, c))
    rest = [latest_cases(r for r in f.to_dict("records")
                         if r.get("interleaved.session") not in shared)
            for f in (baseline, candidate)]
    matched += [Matched(k, k, rest[0][k], rest[1][k]) for k in rest[0] if k in rest[1]]
    only = {"baseline": len(set(rest[0]) - set(rest[1])),
            "candidate": len(set(rest[1]) - set(rest[0]))}
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


def estimate(base: Sequence[Mapping[str, Any]], cand: Sequence[Mapping[str, Any]],
             metric: str, noise: Mapping[str, MachineNoise] | None = None
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
    return shift_of_runs(xs, ys, noise_of(base, noise), noise_of(cand, noise),
                         machine_shift(base, cand, noise))


def shift_of_pairs(pairs: Sequence[tuple[list[list[float]], list[list[float]]]],
                   alpha: float = sequential.ALPHA) -> ShiftEstimate:
    """Independent pairs of an ab session, in the order they were measured: each one's
    Hodges-Lehmann ratio over its turns, judged by the confidence sequence that decided
    when the session stopped (its p-value is valid under those repeated looks)."""
    look = sequential.look([math.log(shift_of_turns(*p).ratio) for p in pairs], alpha)
    low, high = look.interval
    se = (look.high - look.low) / (2 * _Z_ALPHA)
    return ShiftEstimate(look.ratio, low, high, look.p_value,
                         math.expm1((_Z_ALPHA + _Z_POWER) * se), "pairs")


def interleaved_turns(base: Sequence[Mapping[str, Any]], cand: Sequence[Mapping[str, Any]],
                      metric: str) -> tuple[list[list[float]], list[list[float]]] | None:
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


def session_pairs(base: Sequence[Mapping[str, Any]], cand: Sequence[Mapping[str, Any]],
                  metric: str) -> list[tuple[list[list[float]], list[list[float]]]] | None:
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


def repeated(xs: Sequence[Sequence[float]], ys: Sequence[Sequence[float]]) -> bool:
    """Whether both sides have enough processes for the bootstrap over processes."""
    return len(xs) >= MIN_REPEATS and len(ys) >= MIN_REPEATS


def shift_of_processes(xs: Sequence[Sequence[float]], ys: Sequence[Sequence[float]]
                       ) -> ShiftEstimate:
    """Samples grouped by process: a bootstrap over processes when both sides have
    enough of them, else the shift of the pooled samples."""
    if repeated(xs, ys):
        return shift_of_repeats(xs, ys)
    return shift([v for s in xs for v in s], [v for s in ys for v in s])


@dataclass(frozen=True)
class MachineNoise:
    """How much a run's machine speed wandered from case to case: the robust sd of its
    log heartbeats, each centred on the median of its device, threads and host."""

    sd: float | None  # None: fewer than MIN_HEARTBEATS heartbeats to estimate it from
    count: int  # heartbeats
    centres: Mapping[tuple[Any, ...], float] = field(default_factory=dict)  # median logs

    @property
    def df(self) -> float:
        """Degrees of freedom of ``sd`` squared as a variance estimate."""
        return MAD_EFFICIENCY * self.count

    def of_case(self, rows: Sequence[Mapping[str, Any]]) -> MachineNoise:
        """The noise of one case's median: the run's, or the root-mean-square deviation
        of the case's own heartbeats if larger (the machine was disturbed around that
        case), scaled from the heartbeat's window to the time the case was sampled."""
        key = _beat_group(rows[0])
        if self.sd is None or key not in self.centres:
            return self
        deviations = [x - self.centres[key] for row in rows for x in _log_beats(row)]
        own = math.sqrt(np.mean(np.square(deviations))) if deviations else 0.0
        window = math.exp(self.centres[key]) * HEARTBEAT_PRODUCTS * HEARTBEAT_BLOCKS
        sampled = float(np.median([_sampled_seconds(row) for row in rows]))
        if not sampled > 0:  # records without samples: no window to scale the noise to
            return replace(self, sd=max(self.sd, own))
        return replace(self, sd=max(self.sd, own) * (sampled / window) ** -DRIFT_EXPONENT)

    def centre(self, rows: Sequence[Mapping[str, Any]]) -> float | None:
        """The run's median log heartbeat where a case's records were measured."""
        return self.centres.get(_beat_group(rows[0]))

    def why_unknown(self, side: str) -> str:
        detail = (f"the {side} run recorded no heartbeats" if not self.count else
                  f"the {side} run has {self.count} heartbeats, fewer than {MIN_HEARTBEATS}")
        return (f"machine noise unknown ({detail}): use 'harness run --repeats {MIN_REPEATS}' "
                "or 'harness ab'")


NO_HEARTBEATS = MachineNoise(None, 0)


def _run_noise(rows: Sequence[Mapping[str, Any]], noise: Mapping[str, MachineNoise] | None
               ) -> MachineNoise:
    return (noise or {}).get(rows[0].get("run_id"), NO_HEARTBEATS)


def noise_of(rows: Sequence[Mapping[str, Any]], noise: Mapping[str, MachineNoise] | None
             ) -> MachineNoise:
    """The machine noise around one case, from the noise of its records' run."""
    return _run_noise(rows, noise).of_case(rows)


def _sampled_seconds(row: Mapping[str, Any]) -> float:
    """How long a record's timed blocks took: the window its median summarises."""
    samples = row.get("latency.samples")
    block = row.get("latency.block_size")
    return sum(samples) * (block if isinstance(block, (int, float)) and block > 0 else 1)


def machine_shift(base: Sequence[Mapping[str, Any]], cand: Sequence[Mapping[str, Any]],
                  noise: Mapping[str, MachineNoise] | None) -> float:
    """How much slower (log) the machine was during the candidate's run than during the
    baseline's, by their median heartbeats: every case of the pair shares that shift,
    which the runs' spreads do not see. 0 across machines, whose difference is what a
    comparison of them measures, and where either run has no heartbeats there."""
    environments = [environment_of(rows[0]) for rows in (base, cand)]
    centres = [_run_noise(rows, noise).centre(rows) for rows in (base, cand)]
    if different_machines(environments) or None in centres:
        return 0.0
    return centres[1] - centres[0]


def _log_beats(row: Mapping[str, Any]) -> list[float]:
    beats = (row.get("heartbeat.before"), row.get("heartbeat.after"))
    return [math.log(b) for b in beats if isinstance(b, (int, float)) and 0 < b < math.inf]


def _beat_group(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """Heartbeats are comparable within one device, thread count and host."""
    values = (row.get("device"), row.get("threads"), row.get("environment.hostname"))
    return tuple(None if v is None or v != v else v for v in values)  # NaN: absent


def machine_noise(frame: pd.DataFrame) -> dict[str, MachineNoise]:
    """Each run's machine noise (by run id), from the heartbeats of its ok cases."""
    runs: dict[str, dict[tuple[Any, ...], list[float]]] = {}
    for row in frame[frame["status"] == "ok"].to_dict("records"):
        groups = runs.setdefault(str(row.get("run_id")), {})
        groups.setdefault(_beat_group(row), []).extend(_log_beats(row))
    noise = {}
    for run_id, groups in runs.items():
        centres = {key: float(np.median(logs)) for key, logs in groups.items() if logs}
        deviations = [x - centres[key] for key, logs in groups.items() for x in logs]
        count = len(deviations)
        sd = (MAD_TO_SD * float(np.median(np.abs(deviations))) if count >= MIN_HEARTBEATS
              else None)
        noise[run_id] = MachineNoise(sd, count, centres)
    return noise


@dataclass(frozen=True)
class Unjudged:
    """Why a case has no interval although it has samples."""

    reason: str


def shift_of_runs(xs: Sequence[Sequence[float]], ys: Sequence[Sequence[float]],
                  base: MachineNoise, cand: MachineNoise, level: float = 0.0
                  ) -> ShiftEstimate | Unjudged:
    """The pooled samples' shift, its variance widened by each side's machine noise
    (``MachineNoise.of_case``), the placement floor per process and the square of the
    runs' machine shift ``level`` (``machine_shift``), with a t interval and p-value
    (Satterthwaite's degrees of freedom: all but the noise count as exact)."""
    for side, noise in (("baseline", base), ("candidate", cand)):
        if noise.sd is None:
            return Unjudged(noise.why_unknown(side))
    within = shift([v for s in xs for v in s], [v for s in ys for v in s])
    samples = ((math.log(within.ci_high) - math.log(within.ci_low)) / (2 * _Z_ALPHA)) ** 2
    placement = PLACEMENT_SD**2 * (1 / len(xs) + 1 / len(ys))
    runs = [(noise.sd**2 / len(processes), noise.df)
            for noise, processes in ((base, xs), (cand, ys))]
    variance = samples + placement + level**2 + sum(v for v, _ in runs)
    uncertain = sum(v**2 / df for v, df in runs)
    df = variance**2 / uncertain if uncertain else math.inf
    se, log_ratio = math.sqrt(variance), math.log(within.ratio)
    half = t_quantile(1 - ALPHA, df) * se
    return _estimate(log_ratio, log_ratio - half, log_ratio + half,
                     t_tail(log_ratio / se, df), "runs", within)


def compare(baseline: pd.DataFrame, candidate: pd.DataFrame, metric: str = "latency",
            threshold: float = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """One row per case in both runs: values, ratio, its CI, p and q, MDE and verdict."""
    if metric not in METRICS:
        raise CompareError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    _check_schemas(baseline, candidate)
    noise = {**machine_noise(baseline), **machine_noise(candidate)}
    worse_above = metric != "throughput"
    rows = []
    for match in matched_cases(baseline, candidate)[0]:
        b, c, key = match.baseline, match.candidate, match.candidate_key
        row: dict[str, Any] = {"case": match.label, "model": key[0], "batch_size": key[1],
                               "device": key[3], "dtype": key[4], "compile_mode": key[6],
                               "mode": key[8], "suite": c[0].get("suite") or b[0].get("suite"),
                               "baseline": metric_value(b, metric),
                               "candidate": metric_value(c, metric), "note": None,
                               "samples_verdict": None,
                               "baseline_noise": noise_of(b, noise).sd,
                               "candidate_noise": noise_of(c, noise).sd}
        est = estimate(b, c, metric, noise)
        if isinstance(est, ShiftEstimate):
            row.update(ratio=est.ratio, ci_low=bound(est.ci_low), ci_high=bound(est.ci_high),
                       p_value=est.p_value, mde=bound(est.mde), method=est.method,
                       repeats=(len(b), len(c)))
            if est.method == "pairs":
                took = [r.get("interleaved.case_elapsed_s") for r in c]
                row.update(pairs=len(c), time_s=max((t for t in took if t), default=None))
            if est.within is not None:
                row["samples_verdict"] = judge(est.within, threshold, worse_above)
        elif row["baseline"] and row["candidate"] is not None:
            row.update(ratio=row["candidate"] / row["baseline"], ci_low=None, ci_high=None,
                       p_value=None, mde=None, method=None)
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
    table["verdict"] = [_row_verdict(r, threshold, worse_above, metric)
                        for r in table.to_dict("records")]
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


def _row_verdict(row: Mapping[str, Any], threshold: float, worse_above: bool,
                 metric: str) -> str:
    if row["q_value"] is None or (isinstance(row["q_value"], float) and math.isnan(row["q_value"])):
        if metric != "memory":  # a time without an interval tells nothing
            return "inconclusive"
        # a single number per side (memory): the threshold alone decides
        ratio = row["ratio"]
        return verdict(ratio, (ratio, ratio), True, threshold, worse_above)
    if row.get("method") == "pairs":
        return sequential.verdict(row["ratio"], row["ci_low"], row["ci_high"], row["q_value"],
                                  threshold, worse_above=worse_above)
    return verdict(row["ratio"], (row["ci_low"], row["ci_high"]), row["q_value"] <= ALPHA,
                   threshold, worse_above)


def judge(est: ShiftEstimate, threshold: float, worse_above: bool,
          p_value: float | None = None) -> str:
    """The verdict of an estimate on ``p_value`` (an adjusted one), else on its own."""
    p = est.p_value if p_value is None else p_value
    return verdict(est.ratio, (est.ci_low, est.ci_high), p <= ALPHA, threshold, worse_above)


def geomean_speedups(table: pd.DataFrame, by: Sequence[str] = ("suite", "dtype", "compile_mode"),
                     metric: str = "latency") -> pd.DataFrame:
    """Geometric-mean speedup of candidate over baseline per group (>1: candidate faster)."""
    speed = 1 / table["ratio"] if metric != "throughput" else table["ratio"]
    frame = table.assign(speedup=speed, suite=table["suite"].fillna("-"))
    groups = frame.groupby(list(by), dropna=False)["speedup"]
    result = groups.apply(lambda s: float(np.exp(np.log(s).mean()))).rename("geomean_speedup")
    return pd.concat([result, groups.size().rename("cases")], axis=1).reset_index()


def _check_schemas(*frames: pd.DataFrame) -> None:
    versions = set()
    for frame in frames:
        if "schema" in frame:
            versions.update(int(v) for v in frame["schema"].dropna().unique())
    if len(versions) > 1:
        raise CompareError(f"the runs mix results schema versions {sorted(versions)}; "
                           "compare runs written by the same harness schema")


def _nothing_in_common(base: Mapping[tuple, Any], cand: Mapping[tuple, Any]) -> str:
    if not base or not cand:
        side = "baseline" if not base else "candidate"
        return f"the {side} has no successful cases to compare"
    models = sorted({k[0] for k in base} & {k[0] for k in cand})
    hint = (f"they share models ({', '.join(models[:3])}) but not batch sizes, dims, devices, "
            "dtypes, compile modes or modes" if models else "they share no models")
    return f"the runs have no cases in common: {hint}"


def summarise(table: pd.DataFrame, metric: str) -> dict[str, int]:
    """Cases per verdict, in a fixed order, in the metric's own words."""
    words = [MEMORY_WORDS.get(v, v) if metric == "memory" else v for v in VERDICTS]
    return {v: int((table["verdict"] == v).sum()) for v in words}


def different_machines(environments: Iterable[Mapping[str, Any]]) -> bool:
    """Whether the runs come from different hardware (host, CPU or GPUs differ)."""
    fingerprints = {(e.get("hostname"), e.get("cpu_model"), str(e.get("gpus")))
                    for e in environments}
    return len(fingerprints) > 1


# What a run recorded that moves timings, as loaded columns (``results.load``): its
# isolation and sampling window, the threads its cases used, the versions and numerics
# flags of the code, and the environment variables of thread pools and allocators.
TIMING_SETTINGS = ("settings.isolation", "threads", "settings.min_time", "settings.max_time",
                   "env.harness_version", "env.torch_version", "env.triton_version",
                   *(f"env.torch_settings.{flag}" for flag in (
                       "float32_matmul_precision", "cuda_matmul_allow_tf32", "cudnn_allow_tf32",
                       "cudnn_benchmark", "cudnn_deterministic", "deterministic_algorithms")))
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
    return text if len(text) <= MAX_SETTING_TEXT else text[:MAX_SETTING_TEXT - 3] + "..."


def _recorded(frame: pd.DataFrame, column: str) -> list[Any]:
    return list(frame[column]) if column in frame else []


def _side_text(values: Iterable[Any]) -> str | None:
    """The distinct values of one side ("1" or "1/2" over several runs); None if none."""
    texts = sorted({t for t in map(_setting_text, values) if t is not None})
    return "/".join(texts) if texts else None


def settings_differences(baseline: pd.DataFrame, candidate: pd.DataFrame
                         ) -> list[SettingDifference]:
    """The settings that move timings on which the two sides differ. A setting one side did
    not record (a file from before it was recorded, an import) is unknown, not different;
    an environment variable one side did not set is "unset" when both recorded theirs."""
    found = []
    for column in TIMING_SETTINGS:
        base, cand = (_side_text(_recorded(f, column)) for f in (baseline, candidate))
        if base is not None and cand is not None and base != cand:
            found.append(SettingDifference(column.rpartition(".")[2], base, cand))
    sides = [[v for v in _recorded(f, VARIABLES_COLUMN) if isinstance(v, Mapping)]
             for f in (baseline, candidate)]
    if all(sides):
        for name in sorted({str(n) for side in sides for v in side for n in v}):
            base, cand = (_side_text(v.get(name) for v in side) or "unset" for side in sides)
            if base != cand:
                found.append(SettingDifference(_setting_text(name) or "?", base, cand))
    return found
