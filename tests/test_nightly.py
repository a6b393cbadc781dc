"""The nightly: its script on the smoke suite, a night with an injected regression,
the branch that carries results from night to night, and the workflow that runs it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from harness.store.columnar import Store
from tests.conftest import ROOT, asv_config, chain_package
from tests.conftest import git as _git

NIGHTLY = ROOT / "scripts" / "nightly"
STORE = ROOT / "scripts" / "nightly-store"


def night(env: dict[str, str], out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(NIGHTLY), "--out", str(out), "--max-time", "0.02", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def first_night(tmp_path_factory, work_plugin_env):
    """A night of the smoke suite (which the test plugin's toy_work joins), no baseline."""
    out = tmp_path_factory.mktemp("first_night")
    env = {
        **work_plugin_env,
        "HARNESS_TRACKED_SUITES": "smoke",
        "GITHUB_STEP_SUMMARY": str(out / "step_summary.md"),
    }
    store = out / "store"
    return night(
        env, out / "nightly", "--baseline", str(out / "none.jsonl"), "--store", str(store)
    ), out


@pytest.mark.slow
def test_the_first_night_of_smoke_has_no_baseline_and_passes(first_night, registry):
    done, out = first_night
    assert done.returncode == 0, done.stdout + done.stderr
    assert "$ " + sys.executable + " -m harness check --suite smoke" in done.stdout
    assert f"no baseline at {out / 'none.jsonl'}" in done.stdout
    assert done.stdout.rstrip().splitlines()[-1].startswith("nightly: ok (0 regressed")
    records = [json.loads(line) for line in (out / "nightly/results.jsonl").open()]
    cases = [r for r in records if r["record"] == "case"]
    smoke = registry.suite_models(registry.suite("smoke"))
    assert sorted(c["model"] for c in cases) == sorted([*smoke, "toy_work"])
    assert {c["status"] for c in cases} == {"ok"}
    summary = (out / "nightly/summary.md").read_text()
    assert "No previous nightly results" in summary
    assert (out / "step_summary.md").read_text() == summary
    stored = Store.open(out / "store").load(summary=True)  # the night, ingested
    assert sorted(stored["model"]) == sorted(c["model"] for c in cases)
    assert f"-m harness report {out / 'store'} --since" in done.stdout  # drawn from the store


@pytest.mark.slow
def test_a_night_with_an_injected_regression_fails_naming_the_case(
    first_night, work_plugin_env, tmp_path
):
    _, previous = first_night
    env = {
        **work_plugin_env,
        "HARNESS_TEST_WORK": "40",
        "HARNESS_TRACKED_SUITES": "toy",
        "HOME": str(tmp_path),
    }
    done = night(
        env,
        tmp_path / "nightly",
        "--baseline",
        str(previous / "nightly/results.jsonl"),
        "--asv",
        "--asv-config",
        str(asv_config(tmp_path)),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"^nightly: REGRESSION toy_work\[B=2\] x\d+\.\d+ \[", done.stdout, re.M)
    assert done.stdout.rstrip().splitlines()[-1].startswith("nightly: FAILED (1 regressed")
    assert "nightly: 1 cases slower; measuring their models again" in done.stdout
    for name in ("results", "confirm"):  # slower in the night's run, and again
        verdicts = json.loads((tmp_path / f"nightly/{name}.compare.json").read_text())
        assert [c["case"] for c in verdicts["cases"] if c["regressed"]] == ["toy_work[B=2]"]
    assert "| `toy_work[B=2]` | **slower** |" in (tmp_path / "nightly/summary.md").read_text()
    # asv benchmarked the commit here too (the same tracked suite) and published its site
    assert "latency.toy_work.time_step" in done.stdout
    assert (tmp_path / "results/asv/html/index.html").is_file()
    # and harness compare matches asv's samples, imported, with the previous night, but an
    # import has no heartbeats: one process a side and machine noise unknown, no verdict
    imported = tmp_path / "asv.jsonl"
    harness = [sys.executable, "-m", "harness"]
    subprocess.run(
        [*harness, "import-asv", str(tmp_path / "results/asv/results"), "--out", str(imported)],
        env=env,
        check=True,
        capture_output=True,
    )
    cases = [json.loads(line) for line in imported.open() if '"case"' in line]
    assert sorted(c["batch_size"] for c in cases) == [1, 2, 4]  # the toy suite's sweep
    (case,) = [c for c in cases if c["batch_size"] == 2]
    assert case["model"] == "toy_work" and case["source"] == "asv"
    assert len(case["latency"]["samples"]) >= 10 and case["memory"]["cpu_peak_rss_bytes"] > 0
    compared = subprocess.run(
        [
            *harness,
            "compare",
            str(previous / "nightly/results.jsonl"),
            str(imported),
            "--fail-on-regression",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert compared.returncode == 0, compared.stderr
    (verdict,) = json.loads(compared.stdout)["cases"]
    assert verdict["case"] == "toy_work[B=2]" and verdict["ratio"] > 2  # 40 products, not 1
    assert verdict["verdict"] == "inconclusive"
    assert "candidate run recorded no heartbeats" in verdict["note"]


def test_the_store_carries_a_night_to_the_next(tmp_path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "--bare", str(tmp_path / "origin.git")], check=True)
    for clone in ("tonight", "tomorrow"):
        subprocess.run(
            [*git, "clone", "-q", str(tmp_path / "origin.git"), str(tmp_path / clone)],
            check=True,
            capture_output=True,
        )
    tonight, tomorrow = tmp_path / "tonight", tmp_path / "tomorrow"
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "code"], cwd=tonight, check=True)
    (tonight / "results/asv/results/box").mkdir(parents=True)
    (tonight / "results/asv/results/box/run.json").write_text("{}")
    (tmp_path / "night.jsonl").write_text('{"night": 1}\n')

    first = subprocess.run(
        [str(STORE), "restore", "store"], cwd=tonight, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    assert "no branch nightly-results yet" in first.stdout
    saved = subprocess.run(
        [str(STORE), "save", "store", "cpu", str(tmp_path / "night.jsonl")],
        cwd=tonight,
        capture_output=True,
        text=True,
    )
    assert saved.returncode == 0, saved.stderr

    restored = subprocess.run(
        [str(STORE), "restore", "store"], cwd=tomorrow, capture_output=True, text=True
    )
    assert restored.returncode == 0, restored.stderr
    assert (tomorrow / "store/cpu/results.jsonl").read_text() == '{"night": 1}\n'
    assert (tomorrow / "results/asv/results/box/run.json").is_file()


def _actionlint() -> str:
    found = shutil.which(
        "actionlint",
        path=os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")]),
    )
    assert found, "actionlint is missing: pip install -e '.[dev]' installs it"
    return found


def test_the_workflows_pass_actionlint():
    workflows = sorted(str(p) for p in (ROOT / ".github/workflows").glob("*.yml"))
    assert any(p.endswith("nightly.yml") for p in workflows)
    done = subprocess.run(
        [_actionlint(), "-no-color", *workflows], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_fails_a_broken_workflow(tmp_path):
    shutil.copytree(ROOT / ".github", tmp_path / ".github")
    nightly = tmp_path / ".github/workflows/nightly.yml"
    nightly.write_text(nightly.read_text().replace("needs: cpu", "needs: cpuu"))
    done = subprocess.run(
        [_actionlint(), "-no-color", str(nightly)], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert 'job "pages" needs job "cpuu" which does not exist' in done.stdout


@pytest.fixture(scope="module")
def toy_nights(tmp_path_factory) -> tuple[Path, list[str], dict[str, str]]:
    """A plugin package's checkout whose last two commits are tonight's: a harmless one,
    then one that doubles toyn_chain's work; and the environment that loads it."""
    repo = tmp_path_factory.mktemp("toyn")
    # the entry point named as the module, so $HARNESS_PLUGINS and a tree's entry point
    # are one plugin
    shas = chain_package(
        repo,
        "toyn",
        [("last night", 1, ""), ("tidy | <b>up</b>", 1, ""), ("double the chain", 2, "")],
        "toyn.plugin",
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(repo / "src"),
        "HARNESS_PLUGINS": "toyn.plugin",
        "HARNESS_TRACKED_SUITES": "toyn",
    }
    return repo, shas, env


def _toy_night(repo: Path, env: dict[str, str], out: Path, *args: str):
    return subprocess.run(
        [
            sys.executable,
            str(NIGHTLY),
            "--out",
            str(out),
            "--max-time",
            "0.02",
            "--ab-pair-time",
            "0.05",
            "--ab-time",
            "60",
            *args,
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_a_night_is_gated_turn_about_and_names_the_commit_that_regressed(toy_nights, tmp_path):
    repo, shas, env = toy_nights
    done = _toy_night(repo, env, tmp_path / "nightly", "--previous-commit", shas[0])
    log = done.stdout + done.stderr
    assert done.returncode == 1, log
    assert re.search(
        rf"^nightly: REGRESSION toyn_chain\[B=2[^\]]*\] x\d\.\d\d \[[\d.]+, [\d.]+\]; "
        rf"culprit {shas[2][:12]} 'double the chain'$",
        done.stdout,
        re.M,
    ), log
    assert "toyn_flat" not in "".join(
        line for line in done.stdout.splitlines() if line.startswith("nightly: REGRESSION")
    )
    cases = {c["model"]: c for c in json.loads((tmp_path / "nightly/ab.json").read_text())}
    assert cases["toyn_chain"]["verdict"] == "slower" and cases["toyn_chain"]["ratio"] > 1.5
    assert cases["toyn_flat"]["verdict"] != "slower"
    summary = (tmp_path / "nightly/summary.md").read_text()
    assert f"`{shas[0][:12]}` and this one timed turn about" in summary
    assert re.search(
        rf"^\| `toyn_chain\[B=2[^\]]*\]` \| \*\*slower\*\* \|.*\| "
        rf"`{shas[2][:12]}` double the chain \(x\d",
        summary,
        re.M,
    ), summary
    assert (tmp_path / "nightly/results.jsonl").is_file()  # the separate run, for history
    bisect = json.loads((tmp_path / "nightly/bisect-toyn.json").read_text())
    assert bisect["culprit"] == shas[2]
    assert _git(repo, "status", "--porcelain") == ""


@pytest.mark.slow
def test_a_night_whose_previous_commit_is_not_here_says_so_and_compares_runs(toy_nights, tmp_path):
    repo, _, env = toy_nights
    first = _toy_night(repo, env, tmp_path / "first")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "the first night has nothing to compare with" in first.stdout
    baseline = tmp_path / "first/results.jsonl"
    done = _toy_night(
        repo,
        env,
        tmp_path / "second",
        "--baseline",
        str(baseline),
        "--previous-commit",
        "0123456789abcdef",
    )
    assert "previous night's commit 0123456789ab cannot be checked out here" in done.stdout
    assert "comparing the separate runs of the two nights instead" in done.stdout
    assert (tmp_path / "second/results.compare.json").is_file()
    assert not (tmp_path / "second/ab.json").exists()
    summary = (tmp_path / "second/summary.md").read_text()
    assert "Not judged turn about" in summary
    assert "compared with the previous night's run" in summary


def test_the_previous_night_commit_is_read_from_the_baseline_run(tmp_path):
    import importlib.util
    from importlib.machinery import SourceFileLoader

    loader = SourceFileLoader("nightly_script", str(NIGHTLY))
    nightly = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(nightly)
    baseline = tmp_path / "baseline.jsonl"
    header = {
        "record": "run",
        "schema": 1,
        "run_id": "r1",
        "environment": {"git": {"commit": "ab" * 20}},
    }
    baseline.write_text(json.dumps(header) + "\n")
    assert nightly.measured_commit(baseline) == "ab" * 20
    baseline.write_text(
        '{"record": "run", "schema": 1, "run_id": "r1", "environment": '
        '{"git": {"commit": "$(rm -rf /)"}}}\n'
    )
    assert nightly.measured_commit(baseline) is None  # not a commit: not passed to git
    baseline.write_bytes(b"\x00\xff garbage")
    assert nightly.measured_commit(baseline) is None
    assert "| a \\| b" in nightly._md("| a | b")
