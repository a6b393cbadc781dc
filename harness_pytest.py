"""pytest plugin: benchmark any registered model with pytest-benchmark's ``benchmark``.

    def test_model(benchmark, harness_case):
        benchmark(harness_case.step)

``pytest --harness-suite gan --benchmark-only`` runs that test once per case of the
suite; ``harness_case.step`` is the step ``harness run`` times, and the case's model,
batch size, dtype and device go to ``benchmark.extra_info``. Without a
``--harness-*`` option such tests are skipped.

This module lives outside the ``harness`` package and imports no more of it than the
table of sweep axes until a test asks for ``harness_case``: pytest loads it in every run
of an environment where harness is installed, and the rest of harness imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from harness.axes import AXES, Axis, Flag

if TYPE_CHECKING:
    from harness.sweep.plan import Case

_REGISTRY = pytest.StashKey["Registry"]()
_CASES = pytest.StashKey["list[Case]"]()
_AXES: tuple[tuple[Axis, Flag], ...] = tuple(  # the axes with a --harness-* option
    (axis, axis.pytest) for axis in AXES if axis.pytest
)


@dataclass(frozen=True)
class HarnessCase:
    """One selected case: ``step`` is ready to call, in the case's context."""

    case: Case
    step: Callable[[], object]

    @property
    def extra_info(self) -> dict[str, Any]:
        # the case's own label: a suite's repeats are separate tests, "#2" tells them apart
        return {**self.case.key().benchmark_info(), "harness_case": self.case.label}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "harness models as benchmark cases (harness_case)")
    group.addoption("--harness-suite", metavar="NAME", help="a harness suite")
    group.addoption(
        "--harness-model",
        metavar="NAME[,NAME]",
        help="models (with --harness-suite: a subset of the suite)",
    )
    for _, flag in _AXES:
        group.addoption(*flag.names, metavar=flag.metavar, help=flag.help)


def _names(text: str | None) -> tuple[str, ...] | None:
    names = tuple(n.strip() for n in (text or "").split(",") if n.strip())
    return names or None


def _option(config: pytest.Config, axis: Axis, flag: Flag) -> tuple[Any, ...] | None:
    """The values given to ``flag``; integers, if the axis takes them."""
    text = config.getoption(flag.dest)
    if not axis.most:
        return _names(text)
    try:
        sizes = tuple(int(v) for v in _names(text) or ())
    except ValueError:
        sizes = (0,)
    if any(s <= 0 for s in sizes):
        raise pytest.UsageError(f"{flag.names[0]}: expected positive integers, got {text!r}")
    return sizes or None


def _selected(config: pytest.Config) -> list[Case]:
    from harness.errors import HarnessError
    from harness.models.registry import load_registry
    from harness.sweep.plan import Request, build_plan

    asked = {axis.request_field: _option(config, axis, flag) for axis, flag in _AXES}
    try:
        registry = config.stash[_REGISTRY] = load_registry()
        request = Request(
            suite=config.getoption("harness_suite"),
            models=_names(config.getoption("harness_model")) or (),
            **asked,
        )
        cases = build_plan(registry, request).cases
    except HarnessError as exc:
        raise pytest.UsageError(f"harness: {exc}") from None
    if any(case.batch_size is None for case in cases):
        raise pytest.UsageError(
            "harness: 'auto' batch sizes cannot be benchmarked; give --harness-batch-sizes"
        )
    return list(cases)


def pytest_configure(config: pytest.Config) -> None:
    """Select the cases up front, so a bad option is a usage error, not a collection one."""
    options = ["harness_suite", "harness_model", *(flag.dest for _, flag in _AXES)]
    if any(config.getoption(option) for option in options):
        config.stash[_CASES] = _selected(config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "harness_case" not in metafunc.fixturenames:
        return
    cases = metafunc.config.stash.get(_CASES, None)
    if cases is None:
        skip = pytest.mark.skip(
            reason="no harness cases selected: give --harness-suite NAME or --harness-model NAME"
        )
        metafunc.parametrize("harness_case", [pytest.param(None, marks=skip)], indirect=True)
        return
    metafunc.parametrize(
        "harness_case",
        cases,
        indirect=True,
        ids=[case.label.replace("[", "-").rstrip("]") for case in cases],
    )


@pytest.fixture
def harness_case(request: pytest.FixtureRequest) -> Iterator[HarnessCase]:
    """The case this test is parameterised with, its step built and called once."""
    from harness.execute.workload import prepared

    case: Case = request.param
    spec = request.config.stash[_REGISTRY].model(case.model).spec
    with prepared(spec, case) as step:
        selected = HarnessCase(case, step)
        if "benchmark" in request.fixturenames:
            benchmark = request.getfixturevalue("benchmark")
            benchmark.group = benchmark.group or case.model
            benchmark.extra_info.update(selected.extra_info)
        yield selected
