"""Executes a plan case by case, writing each record the moment it exists.

The runner owns what spans cases: an out-of-memory at one batch size skips the
larger ones of that configuration, a compiled case learns its speedup from its
eager twin, ``auto`` batch sizes are searched, and the peak FLOP/s of each device
and dtype is calibrated once. Where a case runs is the executor's business; an
executor with slots (a cluster) gets one stream of cases per slot, each
stream a whole group of linked cases in plan order, and records are written in the
order they finish.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Protocol, runtime_checkable

from harness.execute import worker
from harness.measure.timing import MeasureConfig
from harness.models.registry import Registry
from harness.store.record import CaseRecord
from harness.store.results import ResultsWriter
from harness.sweep.identity import CaseKey
from harness.sweep.plan import Case, Plan

DEFAULT_MAX_BATCH = 1024


class Executor(Protocol):
    isolation: str

    def measure(
        self, case: Case, config: MeasureConfig, peaks: Mapping[str, float]
    ) -> CaseRecord: ...

    def probe(self, case: Case, batch_size: int) -> str: ...

    def calibrate(self, device: str, dtype: str, threads: int | None) -> float | None: ...


@runtime_checkable
class ClusterExecutor(Executor, Protocol):
    """An executor whose calls may run at once from ``slots`` threads, each call on
    whichever slot of the cluster frees first."""

    slots: int

    def cancel(self) -> None:
        """Cancel the calls in flight and refuse new ones (the driver's Ctrl-C)."""


def calibrate_peaks(executor: Executor, cases: Iterable[Case]) -> dict[str, float | None]:
    """Peak FLOP/s per device and dtype of the plan, by a matmul benchmark each."""
    threads = {(c.device, c.dtype): c.threads for c in cases}  # one thread count per run
    return {worker.peak_key(d, t): executor.calibrate(d, t, n) for (d, t), n in threads.items()}


def search_batch_size(probe: Callable[[int], str], limit: int) -> tuple[int | None, list]:
    """The largest batch size up to ``limit`` whose probe is ``ok``: double, then bisect.

    Returns it (None if even 1 fails) and the probes as ``[batch, outcome]`` pairs.
    Bisection assumes memory grows with batch size, which holds for these models.
    """
    probes: list[list[Any]] = []

    def ok(batch: int) -> bool | None:
        outcome = probe(batch)
        probes.append([batch, outcome])
        return True if outcome == "ok" else False if outcome == "oom" else None

    best, too_big, batch = None, None, 1
    while batch <= limit:
        fits = ok(batch)
        if fits is None:
            return best, probes
        if not fits:
            too_big = batch
            break
        best, batch = batch, batch * 2
    if too_big is None:
        if best is not None and best < limit and ok(limit):
            best = limit
        return best, probes
    while best is not None and too_big - best > 1:
        middle = (best + too_big) // 2
        fits = ok(middle)
        if fits is None:
            break
        best, too_big = (middle, too_big) if fits else (best, middle)
    return best, probes


class Runner:
    """Runs a plan's cases through an executor and a writer."""

    def __init__(
        self,
        plan: Plan,
        registry: Registry,
        executor: Executor,
        writer: ResultsWriter,
        peaks: Mapping[str, float | None],
        max_batch: int = DEFAULT_MAX_BATCH,
        on_start: Callable[[int, Case], None] | None = None,
        on_status: Callable[[str], None] | None = None,
    ):
        self.plan = plan
        self.registry = registry
        self.executor = executor
        self.writer = writer
        self.peaks = {k: v for k, v in peaks.items() if v}
        self.max_batch = max_batch
        self.on_start = on_start or (lambda index, case: None)
        self.on_status = on_status or (lambda message: None)
        self._oom_at: dict[CaseKey, int] = {}
        self._eager_median: dict[CaseKey, float] = {}
        self._searches: dict[CaseKey, dict[str, Any]] = {}

    def _skip_reason(self, case: Case) -> str | None:
        smallest_oom = self._oom_at.get(case.key().any_batch())
        if smallest_oom is not None and case.batch_size and case.batch_size > smallest_oom:
            return f"batch size {smallest_oom} of this configuration ran out of memory"
        return None

    def _searched(self, case: Case) -> tuple[Case | None, dict[str, Any]]:
        """The largest batch that fits, searched once per configuration (not per repeat)."""
        key = case.key().any_batch()
        if key not in self._searches:

            def probe(batch: int) -> str:
                self.on_status(f"{case.label}: probing batch size {batch}")
                return self.executor.probe(case, batch)

            best, probes = search_batch_size(probe, self.max_batch)
            self._searches[key] = {
                "max_batch_size": best,
                "limit": self.max_batch,
                "probes": probes,
            }
        search = self._searches[key]
        best = search["max_batch_size"]
        return (replace(case, batch_size=best) if best else None), search

    def _run_one(self, case: Case) -> CaseRecord:
        reason = self._skip_reason(case)
        if reason:
            return worker.unmeasured(case, "skipped", reason)
        search = None
        if case.batch_size is None:
            sized, search = self._searched(case)
            if sized is None:
                outcome = search["probes"][-1][1] if search["probes"] else "error"
                status = "oom" if outcome == "oom" else "error"
                return worker.unmeasured(
                    case,
                    status,
                    f"no batch size fits (last probe: {outcome})",
                    batch_search=search,
                )
            case = sized
        record = replace(
            self.executor.measure(case, self.plan.measure, self.peaks), batch_search=search
        )
        if record.status == "oom" and case.batch_size:
            key = case.key().any_batch()
            self._oom_at[key] = min(self._oom_at.get(key, case.batch_size), case.batch_size)
        if record.ok and record.median:
            if case.compile_mode == "none":
                self._eager_median[case.key()] = record.median
            elif case.key().eager() in self._eager_median:
                speedup = self._eager_median[case.key().eager()] / record.median
                record = replace(record, speedup_vs_eager=speedup)
        return record

    def _record(self, case: Case) -> CaseRecord:
        return replace(
            self._run_one(case),
            plugin=self.registry.model(case.model).plugin,
            isolation=self.executor.isolation,
        )

    def run(
        self, cases: Iterable[Case] | None = None
    ) -> Generator[tuple[Case, CaseRecord], None, None]:
        cases = list(self.plan.cases if cases is None else cases)
        if isinstance(self.executor, ClusterExecutor):
            yield from self._run_concurrently(cases, self.executor)
            return
        for index, case in enumerate(cases):
            self.on_start(index, case)
            record = self._record(case)
            self.writer.write_case(record)
            yield case, record

    def _run_concurrently(
        self, cases: Sequence[Case], executor: ClusterExecutor
    ) -> Iterator[tuple[Case, CaseRecord]]:
        """Each group of linked cases in its own thread, ``slots`` at once; records are
        written here, in one thread, as they arrive. Ctrl-C cancels what is in flight."""
        groups: dict[CaseKey, list[Case]] = {}
        for case in cases:
            groups.setdefault(case.key().sequence(), []).append(case)
        finished: queue.Queue[tuple[Case, CaseRecord] | BaseException] = queue.Queue()

        def run_group(group: list[Case]) -> None:
            try:
                for case in group:
                    finished.put((case, self._record(case)))
            except BaseException as exc:  # noqa: BLE001 - handed to the writing thread
                finished.put(exc)

        pool = ThreadPoolExecutor(executor.slots, thread_name_prefix="harness-slot")
        try:
            for group in groups.values():
                pool.submit(run_group, group)
            for index in range(len(cases)):
                item = _next(finished)
                if isinstance(item, BaseException):
                    raise item
                case, record = item
                self.on_start(index, case)
                self.writer.write_case(record)
                yield case, record
        except BaseException:
            executor.cancel()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _next(items: queue.Queue) -> Any:
    """The next item; waits in short steps so that Ctrl-C reaches this thread at once."""
    while True:
        try:
            return items.get(timeout=0.2)
        except queue.Empty:
            continue
