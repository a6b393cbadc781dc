"""`harness ab`: interleaved sessions, their paired statistics, sources of model code, faults."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import harness_plugins
from harness import compare
from harness.cli import main
from harness.interleave import MIN_TURNS, shared_cores
from harness.results import iter_records, load
from tests.conftest import TOY_PLUGIN

PLUGINS = Path(harness_plugins.__file__).parent
FAST = ["-m", "calibration_matmul", "-b", "4", "-d", "N=32", "-d", "WORK=4", "--time", "0.1"]


def _turns(rng, ratio: float, count: int = 50, drift: float = 0.1, noise: float = 0.05):
    """Two sides' turns on a machine whose speed wanders by ``drift`` from turn to turn."""
    speed = np.exp(rng.normal(0.0, drift, count))
    base = [list(s * np.exp(rng.normal(0.0, noise, 9))) for s in speed]
    cand = [list(s * ratio * np.exp(rng.normal(0.0, noise, 9))) for s in speed]
    return base, cand


def test_shift_of_turns_sees_a_5_percent_change_through_10_percent_drift():
    rng = np.random.default_rng(4)
    found = [compare.shift_of_turns(*_turns(rng, 1.05)) for _ in range(200)]
    assert sum(e.p_value <= 0.05 and e.ci_low > 1.0 for e in found) == 200
    assert sum(e.ci_low <= 1.05 <= e.ci_high for e in found) >= 180


def test_shift_of_turns_false_alarms_at_about_alpha():
    rng = np.random.default_rng(5)
    alarms = sum(compare.shift_of_turns(*_turns(rng, 1.0)).p_value <= 0.05 for _ in range(1000))
    assert 20 <= alarms <= 80


def test_the_paired_interval_does_not_widen_with_the_machines_drift():
    def widths(drift: float) -> tuple[float, float]:
        base, cand = _turns(np.random.default_rng(6), 1.05, drift=drift)
        paired = compare.shift_of_turns(base, cand)
        pooled = compare.shift([s for t in base for s in t], [s for t in cand for s in t])
        return paired.ci_high - paired.ci_low, pooled.ci_high - pooled.ci_low

    steady, drifting = widths(0.0), widths(0.3)
    assert drifting[0] < 1.2 * steady[0]
    assert drifting[1] > 3 * drifting[0]  # pooled samples carry the drift


def _session_rows(turns_b, turns_c, session_b="s1", session_c="s1"):
    def row(turns, session):
        return {"latency.samples": [s for t in turns for s in t], "batch_size": 4,
                "interleaved.session": session, "interleaved.turns": [len(t) for t in turns]}
    return [row(turns_b, session_b)], [row(turns_c, session_c)]


def test_estimate_pairs_turns_only_within_one_session():
    rng = np.random.default_rng(7)
    base, cand = _turns(rng, 1.05)
    paired = compare.estimate(*_session_rows(base, cand), "latency")
    assert paired == compare.shift_of_turns(base, cand)
    assert compare.interleaved_turns(*_session_rows(base, cand, "s1", "s2"), "latency") is None
    assert compare.interleaved_turns(*_session_rows(base, cand[:-1]), "latency") is None
    throughput = compare.interleaved_turns(*_session_rows(base, cand), "throughput")
    assert throughput[0][0] == pytest.approx([4 / s for s in base[0]])


def test_shared_cores_are_the_last_allowed_ones():
    allowed = sorted(os.sched_getaffinity(0))
    assert shared_cores(1) == allowed[-1:]
    assert shared_cores(len(allowed) + 3) == allowed


def _slow_copy(tmp_path: Path, extra_work: str) -> Path:
    """A copy of the built-in plugins whose calibration model does more work."""
    folder = tmp_path / "slow"
    shutil.copytree(PLUGINS, folder / "plugins", ignore=shutil.ignore_patterns("__pycache__"))
    source = folder / "plugins" / "calibration.py"
    text = source.read_text()
    source.write_text(text.replace("for _ in range(self.work):", extra_work))
    assert source.read_text() != text
    return folder


def test_ab_writes_both_sides_as_one_session_and_compare_pairs_them(tmp_path, capsys):
    out = tmp_path / "ab"
    assert main(["ab", *FAST, "--baseline", str(PLUGINS.parent), "--out", str(out), "-q",
                 "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    (session,) = out.iterdir()
    base, cand = (load(session / f"{side}.jsonl").iloc[0] for side in ("baseline", "candidate"))
    assert base["interleaved.session"] == cand["interleaved.session"]
    assert (base["interleaved.side"], cand["interleaved.side"]) == ("baseline", "candidate")
    assert cand["interleaved.source"] == "working tree"
    assert len(base["interleaved.turns"]) == len(cand["interleaved.turns"]) >= MIN_TURNS
    assert sum(cand["interleaved.turns"]) == len(cand["latency.samples"])
    assert sum(s * base["latency.block_size"] for s in base["latency.samples"]) >= 0.1
    ratio = printed["cases"][0]["ratio"]
    assert main(["compare", str(session / "baseline.jsonl"), str(session / "candidate.jsonl"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cases"][0]["ratio"] == ratio
    turns = compare.interleaved_turns([base], [cand], "latency")
    assert ratio == pytest.approx(compare.shift_of_turns(*turns).ratio)


def test_ab_calls_a_doubled_workload_slower_and_fails_when_asked(tmp_path, capsys):
    slow = _slow_copy(tmp_path, "for _ in range(2 * self.work):")
    code = main(["ab", *FAST, "--baseline", str(PLUGINS.parent), "--candidate", str(slow),
                 "--out", str(tmp_path / "ab"), "-q", "--json", "--fail-on-regression"])
    (case,) = json.loads(capsys.readouterr().out)["cases"]
    assert code == 1
    assert case["verdict"] == "slower"
    assert 1.5 < case["ratio"] < 2.5 and case["ci_low"] > 1.3


@pytest.mark.parametrize("revision", [None, "HEAD~1"])
def test_ab_takes_the_baseline_from_a_git_revision_and_records_its_commit(tmp_path, revision):
    found = subprocess.run(["git", "-C", str(PLUGINS.parent), "rev-parse", "--verify",
                            revision or "HEAD"], capture_output=True, text=True)
    if found.returncode:
        pytest.skip(f"no {revision or 'HEAD'} here: not a git checkout, or a shallow one")
    chosen = ["--baseline", revision] if revision else []
    assert main(["ab", *FAST, *chosen, "--out", str(tmp_path), "-q"]) == 0
    (session,) = tmp_path.iterdir()
    sha = found.stdout.strip()
    source = load(session / "baseline.jsonl").iloc[0]["interleaved.source"]
    assert source == f"{revision or 'HEAD'} ({sha[:10]})"
    header = next(r for r in iter_records(session / "baseline.jsonl") if r["record"] == "run")
    assert header["environment"]["git"] == {"commit": sha, "dirty": False}


@pytest.mark.parametrize("argv, fragments", [
    (["--baseline", "no-such-revision-xyz"], ["no revision 'no-such-revision-xyz'", "folder"]),
    (["--candidate", "/"], ["neither a checkout with plugins/ nor a plugins folder"]),
    (["-d", "WORK=2,3"], ["one value per dimension", "WORK"]),
])
def test_ab_usage_errors_exit_2_with_one_line(capsys, argv, fragments):
    assert main(["ab", *FAST, "-q", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("harness: error:")
    for fragment in fragments:
        assert fragment in err


@pytest.mark.parametrize("body, timeout, fragments", [
    ("import os, signal\n        os.kill(os.getpid(), signal.SIGABRT)\n        for _ in range(self.work):",
     "60", ["candidate (folder", "killed by SIGABRT"]),
    ("import time\n        time.sleep(3600)\n        for _ in range(self.work):",
     "3", ["candidate (folder", "did not answer within 3 s", "--timeout"]),
    ("raise RuntimeError('deliberate')\n        for _ in range(self.work):",
     "60", ["candidate (folder", "failed: RuntimeError: deliberate"]),
])
def test_a_side_that_crashes_hangs_or_raises_is_a_one_line_error(tmp_path, capsys, body, timeout,
                                                                 fragments):
    broken = _slow_copy(tmp_path, body)
    code = main(["ab", *FAST, "--baseline", str(PLUGINS.parent), "--candidate", str(broken),
                 "--timeout", timeout, "--out", str(tmp_path / "ab"), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err
    assert not (tmp_path / "ab").exists()  # no half session left to be compared



def test_ab_measures_models_of_plugins_named_in_the_environment(plugin_module, monkeypatch,
                                                                tmp_path, capsys):
    monkeypatch.setenv("HARNESS_PLUGINS", plugin_module(TOY_PLUGIN))
    assert main(["ab", "-m", "toy_linear", "--time", "0.1", "--baseline", str(PLUGINS.parent),
                 "--out", str(tmp_path), "-q", "--json"]) == 0
    (case,) = json.loads(capsys.readouterr().out)["cases"]
    assert case["model"] == "toy_linear"
