"""`harness history`: segmentation, level changes, ordering, the command, and asv as the bar."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.analysis import history, significance
from harness.cli import main
from harness.store.sources import load_runs
from tests.conftest import write_series

REGRESSED = ("mlp", 8, "float32", "none")
IMPROVED = ("conv", 4, "float32", "none")
OUTLIER = ("mlp", 1, "float32", "none")


def _series_dir(tmp_path: Path, **kwargs) -> Path:
    write_series(
        tmp_path,
        steps={REGRESSED: (6, 1.15), IMPROVED: (8, 0.88)},
        outliers=[(OUTLIER, 3)],
        **kwargs,
    )
    return tmp_path


def test_segment_finds_exact_steps_of_a_noiseless_series():
    y = [0.0] * 5 + [1.0] * 5 + [3.0] * 6
    assert history.segment(y, penalty=0.5) == [5, 10]
    assert history.segment(y, penalty=100) == []


def test_segment_gives_every_segment_two_points():
    y = [0.0] * 6 + [5.0] + [0.0] * 6 + [5.0]  # one-point spikes, in the middle and at the end
    cuts = history.segment(y, penalty=0.1)
    bounds = [0, *cuts, len(y)]
    assert all(b - a >= history.MIN_SEGMENT for a, b in zip(bounds, bounds[1:]))


def test_noise_scale_ignores_a_step_and_an_outlier():
    rng = np.random.default_rng(0)
    y = rng.normal(0, 0.02, 60)
    y[30:] += 0.3
    y[10] += 1.0
    assert history.noise_scale(y) == pytest.approx(0.02, rel=0.3)


def test_locate_puts_a_cut_at_the_step_between_its_neighbours():
    z = [0.0] * 8 + [3.0] * 8 + [0.0] * 8
    assert history.locate(z, [5, 19]) == [8, 16]
    assert history.locate(z[:16], [11]) == [8]


def test_a_level_change_is_the_ratio_of_segment_medians_and_pays_for_its_search():
    rng = np.random.default_rng(0)
    before, after = np.exp(rng.normal(0, 0.02, (2, 50))) * [[1.0], [1.05]]
    change = history.level_change(before, after)
    assert change.ratio == np.median(after) / np.median(before)
    assert change.ci_low < 1.05 < change.ci_high and change.p_value < 1e-10
    (searched,) = history.level_changes([*before, *after], [50], [True] * 100)
    assert searched.p_value == pytest.approx(change.p_value * 97)  # places 2..98
    one_left = [True] * 51 + [False] * 49  # the runs after the first in a slow spell
    assert history.level_changes([*before, *after], [50], one_left) == [None]


def _years(noises, step=None, ratio=1.0, cases=1, seed=0, nights=365):
    """One series per noise (the same draws, scaled), each with ``step``, then
    ``cases - 1`` pure-noise series at the last noise; samples scatter by 1 %."""
    bench = _validation_script()
    made = [
        bench.year(np.random.default_rng(seed), "gaussian", noise, 0.01, nights, step, ratio)
        for noise in noises
    ]
    rng = np.random.default_rng(seed + 1)
    made += [
        bench.year(rng, "gaussian", noises[-1], 0.01, nights, None, 1.0) for _ in range(cases - 1)
    ]
    return [bench.as_series(c.samples, f"case{i}") for i, c in enumerate(made)]


def test_pure_noise_with_large_run_to_run_noise_is_not_flagged():
    """Runs that wander 6 % night to night, their samples 1 %: the samples of two runs
    tell them apart, the level of the runs holds."""
    series = _years([0.06], cases=20)
    values = np.log(series[0].values)
    i = int(np.argmax(np.abs(np.diff(values))))
    apart = significance.shift(series[0].points[i].pooled, series[0].points[i + 1].pooled)
    assert apart.p_value < 1e-6 and abs(math.log(apart.ratio)) > 0.1
    assert history.detect(series) == []


def test_a_level_step_is_found_at_its_night_with_its_level_ratio():
    series = _years([0.02], step=200, ratio=1.05, cases=10, seed=2)
    (step,) = history.detect(series)
    assert (step.key, step.verdict) == (("case0",), "slower")
    assert abs(step.index - 200) <= 1
    assert step.ratio == step.after / step.before == pytest.approx(1.05, abs=0.01)
    assert step.ci_low < 1.05 < step.ci_high and step.q_value < 1e-10


def test_the_interval_widens_with_night_to_night_noise():
    steps = history.detect(_years([0.005, 0.01, 0.02], step=150, ratio=1.12, cases=3))
    assert [(s.key[0], s.index) for s in steps] == [(f"case{i}", 150) for i in range(3)]
    widths = [math.log(s.ci_high / s.ci_low) for s in steps]
    assert widths[0] < widths[1] < widths[2]
    assert widths[2] / widths[0] == pytest.approx(4, rel=0.25)


def test_a_spell_of_three_slow_runs_is_not_a_step_and_a_week_is_two():
    rng = np.random.default_rng(3)
    values = 1e-3 * np.exp(rng.normal(0, 0.01, 60))
    values[20:23] *= 1.4
    spell = _validation_script().as_series([[v] for v in values])
    assert history.detect([spell]) == []
    values[40:47] *= 1.4
    week = _validation_script().as_series([[v] for v in values])
    assert [(s.index, s.verdict) for s in history.detect([week])] == [
        (40, "slower"),
        (47, "faster"),
    ]


def test_history_finds_the_two_steps_and_not_the_slow_run(tmp_path):
    found = history.history(load_runs([_series_dir(tmp_path)]))
    steps = {s.key[0:2]: s for s in found.steps}
    assert sorted(steps) == [("conv", 4), ("mlp", 8)]
    slower, faster = steps[("mlp", 8)], steps[("conv", 4)]
    assert (slower.index, slower.verdict) == (6, "slower")
    assert slower.ratio == pytest.approx(1.15, rel=0.03)
    assert slower.after / slower.before == pytest.approx(1.15, rel=0.03)
    assert slower.previous.run_id == found.runs[5].run_id
    assert (faster.index, faster.verdict) == (8, "faster")
    assert len(found.series) == 7 and all(len(s.points) == 12 for s in found.series)


def test_throughput_calls_the_same_step_a_regression(tmp_path):
    found = history.history(load_runs([_series_dir(tmp_path)]), metric="throughput")
    (slower,) = [s for s in found.steps if s.verdict == "slower"]
    assert slower.key[:2] == ("mlp", 8)
    assert slower.ratio == pytest.approx(1 / 1.15, rel=0.03)


def test_a_step_below_the_threshold_is_not_reported(tmp_path):
    found = history.history(load_runs([_series_dir(tmp_path)]), threshold=0.2)
    assert found.steps == ()


def test_runs_with_repeats_are_one_point_each(tmp_path):
    path = write_series(tmp_path, runs=6)[0]
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, *lines[1:]]) + "\n")  # every case measured twice
    found = history.history(load_runs([tmp_path]))
    first = found.series[0].points[0]
    assert len(first.samples) == 2 and len(first.pooled) == 60
    assert all(len(s.points) == 6 for s in found.series)


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
            "HOME": str(repo),
            "PATH": "/usr/bin:/bin",
        },
    )
    return out.stdout.strip()


def test_commit_order_follows_the_repository_not_the_clock(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    commits = []
    for i in range(12):
        _git(repo, "commit", "-q", "--allow-empty", "-m", f"c{i}")
        commits.append(_git(repo, "rev-parse", "HEAD"))
    # run i (i days in) measured commit 11 - i: the clock runs against the history
    (tmp_path / "runs").mkdir()
    runs = _series_dir(tmp_path / "runs", commits=commits[::-1])
    monkeypatch.chdir(repo)
    by_time = history.history(load_runs([runs]), order="time")
    by_commit = history.history(load_runs([runs]), order="commit")
    assert [r.commit for r in by_commit.runs] == commits
    step = {s.key[:2]: s for s in by_commit.steps}[("mlp", 8)]
    assert step.verdict == "faster" and step.run.commit == commits[6]
    assert {s.key[:2]: s.verdict for s in by_time.steps}[("mlp", 8)] == "slower"


def test_commit_order_needs_the_repository_that_holds_the_commits(tmp_path, monkeypatch, capsys):
    (tmp_path / "runs").mkdir()
    runs = _series_dir(tmp_path / "runs")
    elsewhere = tmp_path / "not-a-repo"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert main(["history", str(runs), "--order", "commit"]) == 1
    err = capsys.readouterr().err
    assert "--order time" in err and len(err.strip().splitlines()) == 1
    _git(elsewhere, "init", "-q")
    _git(elsewhere, "commit", "-q", "--allow-empty", "-m", "unrelated")
    assert main(["history", str(runs), "--order", "commit"]) == 1
    assert "not in the git repository" in capsys.readouterr().err


def test_cli_tables_json_and_the_regression_gate(tmp_path, capsys):
    runs = str(_series_dir(tmp_path))
    assert main(["history", runs]) == 0
    out = capsys.readouterr().out
    assert "2 steps" in out and "regression (slower)" in out and "improvement" in out
    assert "1 regressions, 1 improvements" in out
    assert main(["history", runs, "--fail-on-regression"]) == 1
    assert main(["history", runs, "--threshold", "20%", "--fail-on-regression"]) == 0
    capsys.readouterr()
    assert main(["history", runs, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"] == {"regressions": 1, "improvements": 1}
    assert len(report["runs"]) == 12 and len(report["cases"]) == 7
    assert {s["case"]: s["verdict"] for s in report["steps"]} == {
        "mlp[B=8,N=8]": "slower",
        "conv[B=4,N=8]": "faster",
    }


def test_each_run_is_read_once_however_often_it_is_named(tmp_path):
    paths = write_series(tmp_path, runs=4)
    frame = load_runs([tmp_path, paths[0], f"{paths[1]}#"])
    assert frame.groupby(["file", "run_id"]).ngroups == 4 and len(frame) == 4 * 7


def test_bad_input_is_a_one_line_error(tmp_path, capsys):
    assert main(["history", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_:
        main(["history", str(tmp_path), "--order", "sideways"])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err


def _validation_script():
    path = Path(__file__).parent.parent / "scripts" / "validate_history.py"
    spec = importlib.util.spec_from_file_location("validate_history", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_finds_steps_at_least_as_well_as_asv():
    """120 synthetic series (3 noise levels x with/without outlier runs), seed 0: pooled F1
    of step positions (within one run) against asv's step detection on the same data."""
    pytest.importorskip("asv", reason="asv is in the dev extra")
    bench = _validation_script()
    table = bench.benchmark(seed=0)
    ours = bench.f1(bench.pooled(table, "harness"))
    theirs = max(bench.f1(bench.pooled(table, d)) for d in bench.ASV_STEPS)
    assert ours >= theirs
    assert ours >= 0.8
    assert bench.f1(bench.pooled(table, "harness slower")) >= bench.f1(
        bench.pooled(table, "asv regressions")
    )


@pytest.mark.slow
def test_years_of_nightly_runs():
    """A year of 200 cases with one 5 % step, and one with 50 (2 % night-to-night noise,
    threshold 5 %): no false step, and the steps found within one night."""
    bench = _validation_script()
    rng = np.random.default_rng(0)
    args = argparse.Namespace(noise=0.02, scatter=0.01, nights=365, threshold=0.05)
    sparse, dense = (bench.years(rng, args, "gaussian", 1, stepped) for stepped in (1, 50))
    for counts in (sparse, dense):
        assert counts["false regressions"] == counts["false improvements"] == 0
    assert dense["found"] >= 44 and dense["covered"] >= 0.9 * dense["found"]
