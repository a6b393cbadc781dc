"""The harness's own measurement of each tracked case, as asv track values:
``metrics.<model>.track_throughput``, ``track_peak_memory`` and, for models with
compiled cases, ``track_compile_time``."""

from __future__ import annotations

import math
from typing import Any

from harness.execute.worker import measure_case
from harness.store.record import CaseRecord

from ._generate import REGISTRY, ModelBenchmark, generate


class _Metrics(ModelBenchmark):
    def setup(self, *params: Any) -> None:
        self.measured = self.tracked(params)

    def _record(self) -> CaseRecord:
        spec = REGISTRY.model(self.model).spec
        record = measure_case(spec, self.measured.case, self.measured.config)
        if not record.ok:
            raise RuntimeError(f"{self.measured.case.label}: {record.status}: {record.error}")
        return record

    def track_throughput(self, *params: Any) -> float:
        return self._record().throughput

    track_throughput.unit = "samples/s"

    def track_peak_memory(self, *params: Any) -> int:
        return self._record().memory["cpu_peak_rss_bytes"]

    track_peak_memory.unit = "bytes"


class _CompiledMetrics(_Metrics):
    def track_compile_time(self, *params: Any) -> float:
        if self.measured.case.compile_mode == "none":
            return math.nan  # asv: n/a for the eager cases of a compiled model
        return self._record().compile["time_s"]

    track_compile_time.unit = "seconds"


generate(
    globals(),
    lambda cases: (
        _CompiledMetrics if any(t.case.compile_mode != "none" for t in cases) else _Metrics
    ),
)
