"""``harness ab``'s engine: each case judged by pairs of processes until its verdict is
settled, one case after another.

Two fresh processes of identical code can differ by a percent or two as a whole
(memory layout, placement), which turn-taking inside one pair cannot remove. So a case
is a series of independently started pairs (:func:`pair.measure_pair`), each
giving one log-ratio of candidate over baseline; after each pair the confidence
sequence of :mod:`harness.analysis.sequential` is looked at, and the case stops as soon as it is
``slower``, ``faster`` or ``no change`` past the threshold, or when the next pair would
not fit in its time. Every pair's two records are written as soon as they exist, so
``harness compare`` can judge the session again from the files alone.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from harness.abtest import pair
from harness.abtest.pair import InterleaveError, PairSettings, Side, Spawner
from harness.analysis import sequential, significance
from harness.measure.timing import MeasureConfig
from harness.store.record import CaseRecord
from harness.sweep.plan import Case

PAIR_TIME = 1.0  # timed seconds a side in each pair: see docs/harness-benchmarks.md
MAX_TIME = 120.0  # seconds a case may take, both sides and all pairs included

Write = Callable[[CaseRecord, CaseRecord], None]  # a pair's baseline and candidate records


@dataclass(frozen=True)
class Settings:
    """How each case is judged (threshold, error rate, time) and what its sides load."""

    threshold: float
    max_time: float = MAX_TIME
    pair_time: float = PAIR_TIME
    alpha: float = sequential.ALPHA
    plugins: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()
    require_defined: bool = True  # a side with a tree of code must define the model

    def pair_settings(self) -> PairSettings:
        config = MeasureConfig(max_time=self.pair_time, min_time=0.0)
        return PairSettings(config, self.plugins, self.disabled, self.require_defined)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "max_time": self.max_time,
            "pair_time": self.pair_time,
            "alpha": self.alpha,
            "prior_scales": list(sequential.PRIOR_SCALES),
        }


@dataclass(frozen=True)
class Outcome:
    """How one case ended: its last look and verdict, or the failure that ended it."""

    case: Case
    session: str
    pairs: int
    elapsed_s: float
    look: sequential.Look | None = None
    verdict: str | None = None  # settled, or "inconclusive" when the time ran out
    status: str = "ok"
    error: str | None = None
    log_ratios: tuple[float, ...] = ()  # one per pair, in the order measured
    failed_side: str | None = None  # "baseline" or "candidate", when one failed
    traceback: str | None = None  # where the failed side raised, if it did (bounded)
    output_tail: str | None = None  # what the failed side printed last (bounded)

    def __repr__(self) -> str:
        what = self.verdict if self.status == "ok" else f"{self.status}: {self.error}"
        return (
            f"Outcome({self.case.label}, {what}, pairs={self.pairs}, "
            f"{self.elapsed_s:.1f} s, {self.look!r})"
        )


def pair_log_ratio(base: CaseRecord, cand: CaseRecord) -> float:
    """The pair's candidate/baseline log-ratio: the Hodges-Lehmann estimate over turns."""
    turns = [_turns(record) for record in (base, cand)]
    return math.log(significance.shift_of_turns(*turns).ratio)


def _turns(record: CaseRecord) -> list[list[float]]:
    samples, counts = record.latency["samples"], record.interleaved["turns"]
    cuts = [0]
    for count in counts:
        cuts.append(cuts[-1] + count)
    return [samples[i:j] for i, j in zip(cuts[:-1], cuts[1:])]


def measure_case(
    case: Case,
    baseline: Side,
    candidate: Side,
    settings: Settings,
    spawner: Spawner,
    write: Write,
    rng: random.Random,
    cases: int = 1,
    on_look: Callable[[int, float, sequential.Look | None], None] | None = None,
) -> Outcome:
    """Pairs of ``case`` until settled or out of time; every pair's records to ``write``.
    ``cases`` is how many cases the command judges together (see
    :meth:`sequential.Look.settled`); ``on_look`` gets (pairs so far, seconds so far, the
    look) after every pair."""
    session = uuid.uuid4().hex[:12]
    started = time.monotonic()
    logs: list[float] = []
    current: sequential.Look | None = None
    pair_settings = settings.pair_settings()
    while True:
        pair_started = time.monotonic()
        try:
            base, cand = pair.measure_pair(
                baseline,
                candidate,
                case,
                spawner,
                pair_settings,
                session=session,
                pair=len(logs),
                rng=rng,
            )
        except InterleaveError as exc:
            write(*pair.failed_records(baseline, candidate, case, exc, session, len(logs)))
            return Outcome(
                case,
                session,
                len(logs),
                time.monotonic() - started,
                current,
                None,
                exc.status,
                str(exc),
                tuple(logs),
                exc.role,
                exc.traceback,
                exc.output_tail,
            )
        now = time.monotonic()
        base, cand = (
            replace(r, interleaved={**r.interleaved, "case_elapsed_s": now - started})
            for r in (base, cand)
        )
        write(base, cand)
        logs.append(pair_log_ratio(base, cand))
        current = sequential.look(logs, settings.alpha)
        verdict = current.settled(settings.threshold, settings.alpha, cases)
        if on_look:
            on_look(len(logs), now - started, current)
        if verdict or now - started + (now - pair_started) > settings.max_time:
            return Outcome(
                case,
                session,
                len(logs),
                now - started,
                current,
                verdict or "inconclusive",
                log_ratios=tuple(logs),
            )
