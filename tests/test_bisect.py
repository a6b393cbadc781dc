"""`harness bisect` in a third-party plugin package's checkout: the culprit found past a
commit that cannot be built, a history without a regression declined, several models at
once, and the user's checkout and git state left as they were."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import chain_package
from tests.conftest import git as _git

FAST = ["--pair-time", "0.05", "--time", "60", "-q", "--json"]
# (message, repeat of toybis_chain, a line that breaks the module)
HISTORY = [
    ("base", 1, ""),
    ("docs", 1, ""),
    ("tidy", 1, ""),
    ("break the build", 1, "raise ImportError('half-done refactoring')"),
    ("mend the build", 1, ""),
    ("double the chain", 2, ""),
    ("more docs", 2, ""),
]


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> dict:
    """A plugin package's checkout (not installed) whose sixth commit doubles the chain's
    work and whose fourth cannot be imported; its working tree has an uncommitted edit."""
    repo = tmp_path_factory.mktemp("toybis")
    shas = chain_package(repo, "toybis", HISTORY)
    (repo / "src" / "toybis" / "__init__.py").write_text("# an uncommitted edit\n")
    return {"repo": repo, "shas": shas}


def _bisect(cwd: Path, *argv: str, env: dict | None = None) -> tuple[int, dict, str]:
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "bisect", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    printed = json.loads(done.stdout) if done.stdout.startswith("{") else {}
    return done.returncode, printed, done.stderr


def _state(repo: Path) -> tuple[str, ...]:
    """What a user would notice changed: HEAD, status, the edit, the index, bisect state."""
    git = repo / ".git"
    return (
        _git(repo, "rev-parse", "HEAD"),
        _git(repo, "status", "--porcelain"),
        (repo / "src" / "toybis" / "__init__.py").read_text(),
        (git / "index").read_bytes().hex(),
        (git / "BISECT_LOG").read_text() if (git / "BISECT_LOG").exists() else "",
    )


def test_the_culprit_is_found_past_a_commit_that_cannot_be_built(package, tmp_path):
    repo, shas = package["repo"], package["shas"]
    subprocess.run(
        ["git", "-C", str(repo), "bisect", "start", "--no-checkout", shas[-1], shas[0]],
        capture_output=True,
        check=True,
    )  # the user's own, half done
    before = _state(repo)
    try:
        code, printed, err = _bisect(
            repo,
            shas[0],
            "HEAD",
            "-m",
            "toybis_chain",
            *FAST,
            "--out",
            str(tmp_path / "bisect.json"),
        )
        assert _state(repo) == before
    finally:
        subprocess.run(["git", "-C", str(repo), "bisect", "reset"], capture_output=True)
    assert code == 0, err
    assert printed["culprit"] == shas[5] and printed["subject"] == "double the chain"
    assert printed["parent"] == shas[4]
    assert printed["verdict"] == "slower" and printed["ratio"] > 1.3 and printed["ci_low"] > 1
    assert printed["ci_low"] <= printed["ratio"] <= printed["ci_high"]
    steps = {s["commit"]: s for s in printed["steps"]}
    assert steps[shas[3]]["verdict"] == "skipped"
    assert "half-done refactoring" in steps[shas[3]]["reason"]
    assert {steps[sha]["verdict"] for sha in shas[1:5] if sha in steps} <= {"good", "skipped"}
    assert all(s["verdict"] == "bad" for sha, s in steps.items() if sha in shas[5:])
    assert printed["sessions"] == 1 + len(printed["steps"]) + 1
    assert json.loads((tmp_path / "bisect.json").read_text())["culprit"] == shas[5]
    assert not (repo / "results").exists()


def test_a_history_without_a_regression_is_declined_and_each_model_has_its_own_answer(package):
    repo, shas = package["repo"], package["shas"]
    code, printed, err = _bisect(
        repo, shas[0], shas[-1], "-m", "toybis_chain,toybis_flat", "--threshold", "50%", *FAST
    )
    assert code == 1, err  # one model has no culprit
    cases = {c["model"]: c for c in printed["cases"]}
    assert cases["toybis_chain"]["culprit"] == shas[5]
    flat = cases["toybis_flat"]
    assert flat["culprit"] is None and flat["ratio"] is None and flat["steps"] == []
    assert flat["confirmation"]["verdict"] == "no change"
    assert flat["declined"].startswith("not confirmed: bad against good is no change")


def test_text_output_names_the_culprit_and_every_step(package):
    repo, shas = package["repo"], package["shas"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "bisect",
            shas[4],
            shas[6],
            "-m",
            "toybis_chain",
            "--pair-time",
            "0.05",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    assert f"culprit {shas[5][:10]} 'double the chain'" in done.stdout
    assert "against its parent" in done.stdout and "step 1:" in done.stdout
    assert "timing bad against good" in done.stderr  # progress goes to stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["HEAD", "HEAD~2"], "is not an ancestor of"),
        (["HEAD", "HEAD"], "are the same commit"),
        (["nosuchrev", "HEAD"], "no revision 'nosuchrev'"),
        (["HEAD~2", "HEAD", "-m", "calibration_matmul"], "not defined by"),
    ],
)
def test_bad_revisions_and_models_are_one_line_errors(package, argv, message):
    code, _, err = _bisect(package["repo"], *argv, *FAST)
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_outside_a_git_checkout_is_a_one_line_error(tmp_path):
    code, _, err = _bisect(tmp_path, "HEAD~1", "HEAD", "-m", "toybis_chain")
    assert code == 2 and err.count("\n") == 1 and "not in one" in err, err


def _processes_marked(mark: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and mark.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "(gone)"


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux's /proc")
def test_ctrl_c_leaves_no_processes_trees_or_git_state_behind(package, tmp_path):
    repo, shas = package["repo"], package["shas"]
    mark = f"HARNESS_TEST_MARK={uuid.uuid4().hex}"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), mark.split("=")[0]: mark.split("=")[1]}
    before = _state(repo)
    # -X faulthandler: should it hang, SIGABRT makes it print where each thread is
    child = subprocess.Popen(
        [
            sys.executable,
            "-X",
            "faulthandler",
            "-m",
            "harness.cli",
            "bisect",
            shas[0],
            "HEAD",
            "-m",
            "toybis_chain",
            "--pair-time",
            "0.2",
        ],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not any(scratch.iterdir()) or len(_processes_marked(mark)) < 3:
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.05)
    time.sleep(1.0)  # inside a pair
    child.send_signal(signal.SIGINT)
    try:
        _, err = child.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        left = {pid: _command_line(pid) for pid in _processes_marked(mark)}
        child.send_signal(signal.SIGABRT)
        _, err = child.communicate()
        pytest.fail(f"no exit 60 s after SIGINT; still running: {left}; its stderr:\n{err}")
    assert child.returncode == 130 and err.strip().endswith("harness: interrupted"), err
    assert list(scratch.iterdir()) == []
    assert _processes_marked(mark) == []
    assert _state(repo) == before


def test_the_history_is_first_parent_a_merge_is_one_step(tmp_path):
    from harness.abtest.bisect import first_parents

    repo = tmp_path
    _git(repo, "init", "-q", "-b", "main")
    for name in ("a", "b"):
        (repo / name).write_text(name)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-qm", name)
    _git(repo, "checkout", "-qb", "topic", "HEAD~1")
    for name in ("s1", "s2"):
        (repo / name).write_text(name)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-qm", name)
    _git(repo, "checkout", "-q", "main")
    _git(repo, "merge", "-q", "--no-ff", "-m", "merge topic", "topic")
    (repo / "c").write_text("c")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "c")
    history = first_parents(repo, "HEAD~3", "HEAD")
    assert [c.subject for c in history] == ["a", "b", "merge topic", "c"]


@pytest.mark.parametrize(
    "low, high, skipped, expected",
    [
        (0, 6, set(), 3),
        (0, 6, {3}, 2),
        (0, 6, {2, 3}, 4),
        (2, 4, {3}, None),
        (3, 4, set(), None),
    ],
)
def test_the_midpoint_is_the_unskipped_commit_nearest_the_middle(low, high, skipped, expected):
    from harness.abtest.bisect import _midpoint

    assert _midpoint(low, high, skipped) == expected


def _simulated(level: dict, sd: float, seed: int = 0, fail: str | None = None):
    """A pair of processes as a draw: the log of the candidate's level over the baseline's,
    plus noise; 4 s of a fake clock a pair. ``fail`` names a commit whose side raises."""
    import random

    from harness.abtest.pair import InterleaveError

    rng = random.Random(seed)
    now = [0.0]

    def pair(baseline, candidate) -> float:
        now[0] += 4.0
        for role, commit in (("baseline", baseline), ("candidate", candidate)):
            if commit.sha == fail:
                raise InterleaveError(f"{role} failed", role, "error", "ImportError: half-done")
        return math.log(level[candidate.sha] / level[baseline.sha]) + rng.gauss(0, sd)

    return pair, lambda: now[0]


def _judge(level: dict, sd: float = 0.01, fail: str | None = None, said: list | None = None):
    from harness.abtest import session
    from harness.abtest.bisect import Commit, judge

    good, mid, bad = (Commit(sha, sha) for sha in ("good", "mid", "bad"))
    pair, clock = _simulated(level, sd, fail=fail)
    confirmation = [math.log(level["bad"] / level["good"]) + d for d in (0.01, -0.01, 0.0)]
    groups, sums = [list(confirmation)], list(confirmation)
    return judge(
        mid,
        good,
        bad,
        pair,
        groups,
        sums,
        session.Settings(0.02, max_time=40.0),
        (said if said is not None else []).append,
        clock,
    )


def test_a_midpoint_performing_as_either_end_is_judged_so_in_a_few_rounds():
    for mid, expected in ((1.0, "good"), (1.03, "bad")):
        step = _judge({"good": 1.0, "mid": mid, "bad": 1.03})
        assert step.verdict == expected and 2 <= len(step.rounds) <= 5
        assert step.ratio_to("good") == pytest.approx(mid, abs=0.02)


def test_a_midpoint_that_fails_is_skipped_and_a_failing_end_is_an_error():
    from harness.abtest.pair import InterleaveError

    step = _judge({"good": 1.0, "mid": 1.0, "bad": 1.03}, fail="mid")
    assert step.verdict == "skipped" and step.reason == "error: ImportError: half-done"
    with pytest.raises(InterleaveError):
        _judge({"good": 1.0, "mid": 1.0, "bad": 1.03}, fail="bad")


def test_a_midpoint_halfway_gets_more_time_once_then_is_skipped():
    said: list[str] = []
    step = _judge({"good": 1.0, "mid": math.sqrt(1.03), "bad": 1.03}, sd=0.03, said=said)
    assert step.verdict == "skipped" and step.reason.startswith("unsettled after")
    assert len(said) == 1 and "more time" in said[0]
    assert 40 < step.time_s <= 80 + 8  # its time, the same again, and the round under way
