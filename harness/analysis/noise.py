"""How much the machine's speed wandered during a run, from its heartbeats.

Each case record carries heartbeats (``timing.heartbeat``, a fixed reference workload
timed before and after the case). Their robust spread over a run is that run's machine
noise (around one case, the spread of its own heartbeats if larger), scaled from the
heartbeat's short window to the case's longer one; the difference of the two runs'
median heartbeats is a shift of the whole machine that every case shares. Older files
and imports have no heartbeats: their noise is unknown, never zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.significance import MIN_REPEATS
from harness.measure.stats import HEARTBEAT_BLOCKS, HEARTBEAT_PRODUCTS
from harness.store.results import environment_of

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
        detail = (
            f"the {side} run recorded no heartbeats"
            if not self.count
            else f"the {side} run has {self.count} heartbeats, fewer than {MIN_HEARTBEATS}"
        )
        return (
            f"machine noise unknown ({detail}): use 'harness run --repeats {MIN_REPEATS}' "
            "or 'harness ab'"
        )


NO_HEARTBEATS = MachineNoise(None, 0)


def _run_noise(
    rows: Sequence[Mapping[str, Any]], noise: Mapping[str, MachineNoise] | None
) -> MachineNoise:
    return (noise or {}).get(rows[0].get("run_id"), NO_HEARTBEATS)


def noise_of(
    rows: Sequence[Mapping[str, Any]], noise: Mapping[str, MachineNoise] | None
) -> MachineNoise:
    """The machine noise around one case, from the noise of its records' run."""
    return _run_noise(rows, noise).of_case(rows)


def _sampled_seconds(row: Mapping[str, Any]) -> float:
    """How long a record's timed blocks took: the window its median summarises."""
    samples = row.get("latency.samples")
    block = row.get("latency.block_size")
    return sum(samples) * (block if isinstance(block, (int, float)) and block > 0 else 1)


def machine_shift(
    base: Sequence[Mapping[str, Any]],
    cand: Sequence[Mapping[str, Any]],
    noise: Mapping[str, MachineNoise] | None,
) -> float:
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
        sd = MAD_TO_SD * float(np.median(np.abs(deviations))) if count >= MIN_HEARTBEATS else None
        noise[run_id] = MachineNoise(sd, count, centres)
    return noise


def different_machines(environments: Iterable[Mapping[str, Any]]) -> bool:
    """Whether the runs come from different hardware (host, CPU or GPUs differ)."""
    fingerprints = {
        (e.get("hostname"), e.get("cpu_model"), str(e.get("gpus"))) for e in environments
    }
    return len(fingerprints) > 1
