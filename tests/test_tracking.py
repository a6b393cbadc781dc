"""What asv and the nightly track, and the step other timers call."""

from __future__ import annotations

import pytest
import torch

from harness.bridges.tracking import SUITES_ENV, tracked_cases, tracked_suites
from harness.errors import UsageError
from harness.execute.workload import prepared
from harness.models.suites import Suite
from harness.sweep.plan import Case


def test_tracked_suites_come_from_one_setting(monkeypatch):
    monkeypatch.delenv(SUITES_ENV, raising=False)
    assert tracked_suites() == ("smoke",)
    monkeypatch.setenv(SUITES_ENV, "gan, sequence,")
    assert tracked_suites() == ("gan", "sequence")


def test_tracked_cases_are_every_model_of_the_suites_on_the_cpu_once(registry):
    smoke = tracked_cases(registry, ["smoke"])
    assert [t.case.model for t in smoke] == registry.suite_models(registry.suite("smoke"))
    assert {(t.case.device, t.config.max_time) for t in smoke} == {("cpu", 0.05)}
    assert tracked_cases(registry, ["smoke", "smoke"]) == smoke
    both = tracked_cases(registry, ["smoke", "gan"])
    assert both[: len(smoke)] == smoke
    assert {t.case.suite for t in both[len(smoke) :]} == {"gan"}


def test_a_tracked_suite_needs_fixed_batch_sizes(registry):
    registry.suites["searching"] = Suite("searching", ("mlp",), sweep={"batch_sizes": "auto"})
    try:
        with pytest.raises(UsageError, match="fixed ones"):
            tracked_cases(registry, ["searching"])
    finally:
        del registry.suites["searching"]


def test_prepared_step_is_the_harness_step_in_its_context(registry):
    spec = registry.model("mlp").spec
    case = Case("mlp", 3, spec.resolve_dims({}))
    with prepared(spec, case) as step:
        assert torch.is_inference_mode_enabled()
        out = step()
        assert out.shape == (3, 20) and out.is_inference()
    assert not torch.is_inference_mode_enabled()
