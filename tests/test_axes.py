"""The table of sweep axes: the command line, suite files, the plan and the pytest plugin
spell each axis as the table says, and agree on what a value means."""

from __future__ import annotations

import dataclasses

import pytest

from harness import axes
from harness.cli import build_parser
from harness.errors import SuiteError
from harness.models.registry import Registry
from harness.models.suites import SETTINGS, load_suite_file
from harness.sweep.plan import Request, build_plan

SWEEP_COMMANDS = ("run", "ab", "bisect")
# for every axis with a suite key: options, and the same values as a suite's [sweep] says them
SAME_VALUES = {
    "batch size": (["-b", "4,1"], "batch_sizes = [1, 4]"),
    "device": (["--devices", "cpu"], 'devices = ["cpu"]'),
    "dtype": (["--dtype", "bfloat16,float32"], 'dtypes = ["bfloat16", "float32"]'),
    "precision": (["--precision", "amp"], 'precision = "amp"'),
    "compile mode": (["--compile", "default,none"], 'compile = ["default", "none"]'),
    "backend": (
        ["--backend", "eager", "--compile", "default"],
        'backend = "eager"\ncompile = "default"',
    ),
    "mode": (["--mode", "train,infer"], 'modes = ["train", "infer"]'),
}


def _parse(*argv: str):
    return build_parser().parse_args(list(argv))


def _command_args(command: str) -> list[str]:
    return ["GOOD", "BAD"] if command == "bisect" else []


@pytest.mark.parametrize("command", SWEEP_COMMANDS)
def test_every_axis_is_an_option_of_the_sweep_commands_taking_its_values(command, capsys):
    with pytest.raises(SystemExit):
        _parse(command, "--help")
    shown = capsys.readouterr().out
    for axis in axes.AXES:
        assert all(name in shown for name in axis.option.names), axis.name
        parsed = _parse(command, *_command_args(command))
        assert getattr(parsed, axis.option.dest) is None  # unset: the suite's or the default
        for value in axis.values or ():
            parsed = _parse(command, *_command_args(command), axis.option.names[-1], value)
            assert getattr(parsed, axis.option.dest) == ((value,) if axis.sweeps else value)


@pytest.mark.parametrize("axis", [a for a in axes.AXES if a.values], ids=lambda a: a.name)
def test_a_value_an_axis_does_not_accept_is_a_usage_error_naming_the_option(axis, capsys):
    with pytest.raises(SystemExit) as exit_:
        _parse("run", axis.option.names[0], "bogus")
    assert exit_.value.code == 2
    assert axis.option.names[0] in capsys.readouterr().err


def test_profile_takes_one_value_per_axis_and_asks_for_a_sweep_of_one():
    parsed = _parse("profile", "-m", "perceptron")
    assert axes.requested(parsed, one=True) == {
        "batch_sizes": None,
        "devices": ("cpu",),
        "dtypes": ("float32",),
        "precision": None,
        "compile_modes": ("none",),
        "backend": None,
        "modes": ("infer",),
        "threads": None,
    }
    parsed = _parse(
        "profile", "-m", "perceptron", "-b", "8", "--compile", "default", "--threads", "2"
    )
    asked = axes.requested(parsed, one=True)
    assert (asked["batch_sizes"], asked["compile_modes"], asked["threads"]) == (
        (8,),
        ("default",),
        2,
    )


def test_ab_per_side_options_set_the_case_fields_of_their_axes():
    parsed = _parse(
        "ab",
        "-m",
        "perceptron",
        "--candidate-compile",
        "default",
        "--baseline-dtype",
        "bfloat16",
        "--candidate-threads",
        "2",
    )
    assert axes.side_options(parsed, "baseline") == {"dtype": "bfloat16"}
    assert axes.side_options(parsed, "candidate") == {"compile_mode": "default", "threads": 2}
    for axis, flag in axes.SIDES:
        for value in axis.values or ():
            parsed = _parse("ab", flag.names[0].format(role="candidate"), value)
            assert axes.side_options(parsed, "candidate") == {axis.case_field: value}


def test_a_suite_sweep_accepts_exactly_the_axes_and_the_measure_settings(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('models = ["a"]\n[sweep]\ncompiles = ["default"]\n')
    with pytest.raises(SuiteError) as info:
        load_suite_file(path)
    allowed = sorted({a.suite_key for a in axes.AXES if a.suite_key} | set(SETTINGS))
    assert str(info.value) == (
        f"{path}: [sweep]: unknown key(s) compiles (allowed: {', '.join(allowed)})"
    )


@pytest.mark.parametrize(
    "axis", [a for a in axes.AXES if a.suite_key and a.values], ids=lambda a: a.name
)
def test_a_suite_value_an_axis_does_not_accept_is_an_error_naming_the_key(axis, tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(f'models = ["a"]\n[sweep]\n{axis.suite_key} = "bogus"\n')
    with pytest.raises(SuiteError, match=rf"\[sweep\]\.{axis.suite_key}"):
        load_suite_file(path)


@pytest.mark.parametrize("axis", [a for a in axes.AXES if a.suite_key], ids=lambda a: a.name)
def test_options_and_a_suite_sweep_saying_the_same_plan_the_same_cases(registry, tmp_path, axis):
    options, sweep = SAME_VALUES[axis.name]
    for name, table in (("plain", ""), ("swept", f"[sweep]\n{sweep}\n")):
        (tmp_path / f"{name}.toml").write_text(f'models = ["perceptron"]\n{table}')
    suites = {name: load_suite_file(tmp_path / f"{name}.toml") for name in ("plain", "swept")}
    mine = Registry(registry.models, suites, registry.plugins)
    given = Request(suite="plain", **axes.requested(_parse("run", *options)))
    from_options = build_plan(mine, given).cases
    from_suite = build_plan(mine, Request(suite="swept")).cases
    assert getattr(given, axis.request_field) is not None
    assert [dataclasses.replace(c, suite=None) for c in from_options] == [
        dataclasses.replace(c, suite=None) for c in from_suite
    ]


def test_the_pytest_plugin_has_the_options_the_table_gives_it(pytestconfig):
    flags = [axis.pytest for axis in axes.AXES if axis.pytest]
    assert [f.names for f in flags] == [
        ("--harness-batch-sizes",),
        ("--harness-devices",),
        ("--harness-dtypes",),
    ]
    for flag in flags:
        assert pytestconfig.getoption(flag.dest) is None
