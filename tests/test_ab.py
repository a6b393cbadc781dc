"""`harness ab` inside a third-party plugin package's checkout: revisions, settings and
interpreters as sides, several cases at once, and the errors a user meets."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

from harness.store.record import CaseRecord, RunHeader
from harness.store.results import iter_records
from tests.conftest import ROOT, plugin_pyproject
from tests.conftest import git as _git

PLUGIN = """
    import os
    import torch
    from torch import nn
    import harness
    from harness import Dim, Input, ModelSpec

    REPEAT = {repeat}


    class Chain(nn.Module):
        def __init__(self, n=32, work=4):
            super().__init__()
            self.w = nn.Parameter(torch.eye(n))
            self.work = work * int(os.environ.get("TOYPERF_SCALE", "1"))

        def forward(self, x):
            for _ in range(self.work * REPEAT):
                x = x @ self.w
            return x


    class Fragile(Chain):
        def forward(self, x):
            {fragile}
            return super().forward(x)


    @harness.hookimpl
    def harness_models():
        dims = {{"N": Dim(32, kwarg="n"), "WORK": Dim(4, kwarg="work")}}
        inputs, outputs = [Input("x", "(B, N)")], ["(B, N)"]
        return [ModelSpec(name="toyperf_chain", constructor=Chain, inputs=inputs,
                          outputs=outputs, dims=dims, batch_sizes=(4,)),
                ModelSpec(name="toyperf_fragile", constructor=Fragile, inputs=inputs,
                          outputs=outputs, dims=dims, batch_sizes=(4,))]
"""
FAST = ["--pair-time", "0.05", "--time", "60", "-q", "--json"]


def _commit(repo: Path, message: str, repeat: int, fragile: str) -> str:
    plugin = repo / "src" / "toyperf" / "plugin.py"
    plugin.write_text(textwrap.dedent(PLUGIN.format(repeat=repeat, fragile=fragile)))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", message)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> dict[str, Path | str]:
    """A plugin package's checkout, not installed: `base`, then `doubled` (its chain does
    twice the work; its fragile model, which raised, is mended)."""
    repo = tmp_path_factory.mktemp("toyperf")
    (repo / "src" / "toyperf").mkdir(parents=True)
    (repo / "src" / "toyperf" / "__init__.py").write_text("")
    (repo / "pyproject.toml").write_text(plugin_pyproject("toyperf", {"toyperf": "toyperf.plugin"}))
    _git(repo, "init", "-q")
    base = _commit(repo, "base", 1, "raise RuntimeError('fragile in base')")
    doubled = _commit(repo, "doubled", 2, "pass")
    return {"repo": repo, "base": base, "doubled": doubled}


def _ab(cwd: Path, *argv: str, python: str = sys.executable) -> tuple[int, dict, str]:
    done = subprocess.run(
        [python, "-m", "harness.cli", "ab", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    printed = json.loads(done.stdout) if done.stdout.startswith("{") else {}
    return done.returncode, printed, done.stderr


def _cases(printed: dict) -> dict[str, dict]:
    return {case["model"]: case for case in printed["cases"]}


def _header(session: Path, role: str) -> RunHeader:
    return next(r for r in iter_records(session / f"{role}.jsonl") if isinstance(r, RunHeader))


def test_a_doubled_workload_across_revisions_is_slower_and_a_side_that_fails_is_recorded(
    package, tmp_path
):
    code, printed, err = _ab(
        package["repo"],
        "-m",
        "toyperf_chain,toyperf_fragile",
        "--baseline",
        "HEAD~1",
        "--candidate",
        "HEAD",
        "--out",
        str(tmp_path),
        *FAST,
    )
    cases = _cases(printed)
    assert code == 1, err  # the fragile case failed on one side
    assert cases["toyperf_chain"]["verdict"] == "slower"
    assert 1.5 < cases["toyperf_chain"]["ratio"] < 2.5
    fragile = cases["toyperf_fragile"]
    assert (fragile["verdict"], fragile["status"], fragile["side"]) == (
        "failed",
        "error",
        "baseline",
    )
    assert "baseline" in fragile["error"] and "fragile in base" in fragile["error"]
    (session,) = tmp_path.iterdir()
    for role, commit in (("baseline", package["base"]), ("candidate", package["doubled"])):
        header = _header(session, role)
        assert header.environment["git"]["commit"] == commit
        assert header.side["code"]["distribution"] == "toyperf"
    assert not (package["repo"] / "results").exists()
    assert _git(package["repo"], "status", "--porcelain") == ""  # the checkout is untouched


def test_the_python_api_gives_the_verdicts_of_the_command_as_a_frame(
    package, tmp_path, monkeypatch
):
    import harness

    monkeypatch.chdir(package["repo"])
    verdicts = harness.ab(
        ["toyperf_chain", "toyperf_fragile"], baseline="HEAD~1", candidate="HEAD",
        pair_time=0.05, time=60, out=tmp_path,
    )  # fmt: skip
    rows = verdicts.set_index("model")
    assert rows.loc["toyperf_chain", "verdict"] == "slower"
    chain = rows.loc["toyperf_chain"]
    assert chain["ci_low"] <= chain["ratio"] <= chain["ci_high"] and 1.5 < chain["ratio"] < 2.5
    assert chain["q_value"] <= 0.05 and chain["pairs"] >= 2
    fragile = rows.loc["toyperf_fragile"]
    assert (fragile["verdict"], fragile["status"], fragile["side"]) == (
        "failed",
        "error",
        "baseline",
    )
    (session,) = tmp_path.iterdir()  # out= keeps the sides' files
    assert {p.name for p in session.iterdir()} == {"baseline.jsonl", "candidate.jsonl"}
    with pytest.raises(harness.UsageError, match="drop json"):
        harness.ab("toyperf_chain", json=True)


def test_debug_shows_where_a_failing_side_raised(package, tmp_path):
    code, _, err = _ab(
        package["repo"],
        "-m",
        "toyperf_fragile",
        "--baseline",
        "HEAD~1",
        "--candidate",
        "HEAD",
        "--debug",
        "--out",
        str(tmp_path),
        *FAST,
    )
    assert code == 1
    shown = err.split("toyperf_fragile[B=4,N=32,WORK=4] traceback:\n", 1)[1]
    assert "plugin.py" in shown and "RuntimeError: fragile in base" in shown


def test_the_same_revision_on_both_sides_is_not_slower(package, tmp_path):
    code, printed, err = _ab(
        package["repo"],
        "-m",
        "toyperf_chain",
        "--baseline",
        "HEAD",
        "--candidate",
        "HEAD",
        "--threshold",
        "50%",
        "--out",
        str(tmp_path),
        *FAST,
    )
    assert code == 0, err
    assert _cases(printed)["toyperf_chain"]["verdict"] == "no change"


def test_a_model_the_repository_does_not_define_is_a_one_line_usage_error(package):
    code, _, err = _ab(package["repo"], "-m", "calibration_matmul", *FAST)
    assert code == 2
    assert err.count("\n") == 1
    assert "not defined by working tree of" in err and "calibration_matmul" in err


def test_per_side_options_and_environment_reach_the_candidate(package, tmp_path):
    code, printed, err = _ab(
        package["repo"],
        "-m",
        "toyperf_chain",
        "--baseline",
        "HEAD",
        "--candidate",
        "HEAD",
        "--candidate-env",
        "TOYPERF_SCALE=4",
        "--candidate-dtype",
        "bfloat16",
        "--candidate-threads",
        "1",
        "--out",
        str(tmp_path),
        *FAST,
    )
    assert code == 0, err
    case = _cases(printed)["toyperf_chain"]
    assert case["verdict"] == "slower" and case["ratio"] > 2  # four times the products
    assert case["case"].endswith(",bfloat16] vs dtype=float32")  # one session, two cases
    (session,) = tmp_path.iterdir()
    side = _header(session, "candidate").side
    assert side["env"] == {"TOYPERF_SCALE": "4"}
    assert side["options"] == {"dtype": "bfloat16", "threads": 1}
    assert _header(session, "baseline").side["env"] == {}
    records = [r for r in iter_records(session / "candidate.jsonl") if isinstance(r, CaseRecord)]
    assert {(r.dtype, r.threads) for r in records} == {("bfloat16", 1)}
    assert "float32" in {
        r.dtype for r in iter_records(session / "baseline.jsonl") if isinstance(r, CaseRecord)
    }


def _environment(path: Path, *packages: Path) -> str:
    """A virtual environment that sees this harness (and torch) through the system's site
    packages, with ``packages`` installed editable; its python."""
    venv.create(path, system_site_packages=True, with_pip=True)
    python = str(path / "bin" / "python")
    for package in packages:
        subprocess.run(
            [python, "-m", "pip", "install", "-q", "--no-deps", "-e", str(package)],
            check=True,
            capture_output=True,
        )
    return python


@pytest.mark.slow
def test_revisions_of_an_editable_installed_package_are_its_revisions_not_the_install(
    package, tmp_path
):
    python = _environment(tmp_path / "venv", package["repo"])
    code, printed, err = _ab(
        package["repo"],
        "-m",
        "toyperf_chain",
        "--baseline",
        "HEAD~1",
        "--candidate",
        "HEAD~1",
        "--threshold",
        "50%",
        "--out",
        str(tmp_path / "same"),
        *FAST,
        python=python,
    )
    assert code == 0, err
    assert _cases(printed)["toyperf_chain"]["verdict"] == "no change"
    code, printed, err = _ab(
        package["repo"],
        "-m",
        "toyperf_chain",
        "--baseline",
        "HEAD~1",
        "--out",
        str(tmp_path / "head"),
        *FAST,
        python=python,
    )
    assert _cases(printed)["toyperf_chain"]["verdict"] == "slower", err


@pytest.mark.slow
def test_a_side_in_another_environment_runs_its_interpreter_and_records_it(tmp_path):
    python = _environment(tmp_path / "venv")
    code, printed, err = _ab(
        ROOT,
        "-m",
        "calibration_matmul",
        "-b",
        "4",
        "-d",
        "N=32",
        "--candidate-python",
        python,
        "--threshold",
        "50%",
        "--out",
        str(tmp_path / "ab"),
        *FAST,
    )
    assert code == 0, err
    assert _cases(printed)["calibration_matmul"]["verdict"] == "no change"
    (session,) = (tmp_path / "ab").iterdir()
    candidate, baseline = (_header(session, r).side for r in ("candidate", "baseline"))
    assert candidate["python"] == python and baseline["python"] == sys.executable
    assert candidate["torch"] and candidate["harness"] and candidate["protocol"] == 2
    assert candidate["code"] is None  # the code installed in that environment


PROTOCOL_1 = "c6e3952614"  # the last commit whose harness ab spoke protocol 1


@pytest.mark.slow
def test_an_interpreter_with_a_harness_of_another_protocol_is_a_one_line_error(tmp_path):
    if subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{PROTOCOL_1}^{{commit}}"], capture_output=True
    ).returncode:
        pytest.skip("the commit with the old protocol is not in this clone")
    old = tmp_path / "old"
    old.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", PROTOCOL_1], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    venv.create(tmp_path / "venv", system_site_packages=True, with_pip=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", str(old)],
        check=True,
        capture_output=True,
    )
    code, _, err = _ab(
        ROOT, "-m", "calibration_matmul", "-b", "4", "--baseline-python", python, *FAST
    )
    assert code == 2 and err.count("\n") == 1
    assert "speaks ab protocol 1" in err and "speaks protocol 2" in err
    assert f"harness 0.1.0 at {tmp_path}" in err  # both versions, and where each is
