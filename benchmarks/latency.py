"""asv's own timing of the step the harness times: ``latency.<model>.time_step``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from harness.execute.workload import prepared
from harness.sweep.identity import CaseKey

from ._generate import REGISTRY, ModelBenchmark, generate

# asv runs each benchmark in a process of its own and (asv_runner >= 0.3) calls setup
# again before every sample, so a step is built once per process and kept, open in
# its context (inference mode, autocast), until the process ends.
_STEPS: dict[CaseKey, Callable[[], object]] = {}
_OPEN = contextlib.ExitStack()


class _Latency(ModelBenchmark):
    repeat = (10, 50, 2.0)  # 10 to 50 samples, at most 2 s per round

    def setup(self, *params: Any) -> None:
        case = self.tracked(params).case
        if case.key() not in _STEPS:
            spec = REGISTRY.model(self.model).spec
            _STEPS[case.key()] = _OPEN.enter_context(prepared(spec, case))
        self.step = _STEPS[case.key()]

    def time_step(self, *params: Any) -> None:
        self.step()


generate(globals(), lambda cases: _Latency)
