"""The Ray executor on a real local Ray cluster: the cases of the local executor, a worker
killed mid-case, Ctrl-C and resume, node kinds compared in one command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.cli import main
from harness.execute.ray_executor import MISSING_RAY, SLOT
from harness.store.record import CaseRecord, RunHeader
from harness.store.results import iter_records
from tests.conftest import wait_for_cases
from tests.test_engine import QUICK_ARGS, _case_lines

KILLER_PLUGIN = """
    import os, signal
    from torch import nn
    import harness
    from harness import Input, ModelSpec

    def _parent_of(pid):
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])

    class KillsItsRayWorker(nn.Module):
        '''Kills the Ray worker whose task forked this case (the forkserver's parent).'''

        def forward(self, x):
            worker = _parent_of(os.getppid())
            with open(f"/proc/{worker}/cmdline", "rb") as fh:
                if b"ray" not in fh.read():
                    raise RuntimeError("not in a case under a Ray worker")
            with open(os.environ["HARNESS_TEST_KILLS"], "a") as fh:
                fh.write(f"{worker}\\n")
            os.kill(worker, signal.SIGKILL)
            return x

    @harness.hookimpl
    def harness_models():
        return [ModelSpec(name="ray_kills_worker", constructor=KillsItsRayWorker,
                          inputs=[Input("x", "(B, 4)")], outputs=["(B, 4)"], batch_sizes=(1,))]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """A one-node Ray cluster with a benchmark slot, the label kind=test and the resource
    cpu-only, whose workers can import KILLER_PLUGIN; shut down after the module."""
    ray = pytest.importorskip("ray", reason="the Ray executor needs pip install 'harness[ray]'")
    directory = tmp_path_factory.mktemp("ray_cluster")
    (directory / "harness_test_killer.py").write_text(textwrap.dedent(KILLER_PLUGIN))
    env = {
        "PYTHONPATH": str(directory),
        "HARNESS_PLUGINS": "harness_test_killer",
        "HARNESS_TEST_KILLS": str(directory / "kills.txt"),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():  # the raylet, and so its workers, inherit these
            patch.setenv(name, value)
        context = ray.init(
            num_cpus=2,
            resources={SLOT: 1, "cpu-only": 1},
            labels={"kind": "test"},
            include_dashboard=False,
            logging_level="WARNING",
        )
    try:
        yield {
            "address": context.address_info["gcs_address"],
            "env": {**os.environ, **env},
            "kills": directory / "kills.txt",
        }
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def two_nodes():
    """The address of a two-node Ray cluster on this machine, a slot on each node."""
    pytest.importorskip("ray", reason="the Ray executor needs pip install 'harness[ray]'")
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {SLOT: 1}, "include_dashboard": False},
    )
    try:
        cluster.add_node(num_cpus=1, resources={SLOT: 1})
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        cluster.shutdown()


def _harness(
    env: dict[str, str], *args: object, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _known(record: CaseRecord) -> set[str]:
    """The fields of a record that hold a value."""
    return {name for name, value in vars(record).items() if value is not None and name != "extra"}


def _by_model(path: Path) -> dict[str, CaseRecord]:
    return {r.model: r for r in _case_lines(path)}


@pytest.mark.slow
def test_the_smoke_suite_through_ray_has_the_cases_and_records_of_the_local_executor(tmp_path):
    pytest.importorskip("ray", reason="the Ray executor needs pip install 'harness[ray]'")
    quick = [*QUICK_ARGS, "--min-time", "0"]
    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    assert main(["run", "--suite", "smoke", *quick, "--out", str(local)]) == 0
    # no --address: the harness starts a local cluster of its own, and stops it
    done = _harness(
        dict(os.environ), "run", "--suite", "smoke", *quick, "--executor", "ray", "--out", remote
    )
    assert done.returncode == 0, done.stderr
    here, there = _by_model(local), _by_model(remote)
    assert sorted(r.run_key() for r in here.values()) == sorted(r.run_key() for r in there.values())
    for model, record in there.items():
        assert _known(record) == _known(here[model]) | {"node", "environment"}
        for part in ("latency", "memory", "flops"):
            assert set(getattr(record, part)) == set(getattr(here[model], part)), (model, part)
        assert record.environment["hostname"] and record.node["id"]
    header = next(r for r in iter_records(remote) if isinstance(r, RunHeader))
    assert header.executor["name"] == "ray" and header.executor["address"] == "local"


@pytest.mark.slow
def test_a_killed_worker_is_retried_once_then_recorded_crashed(cluster, tmp_path):
    out = tmp_path / "killed.jsonl"
    done = _harness(
        cluster["env"],
        "run",
        "-m",
        "ray_kills_worker,perceptron",
        "-b",
        "1",
        *QUICK_ARGS,
        "--executor",
        "ray",
        "--address",
        cluster["address"],
        "--out",
        out,
    )
    assert done.returncode == 1, done.stderr
    records = _by_model(out)
    crashed = records["ray_kills_worker"]
    assert crashed.status == "crashed"
    assert "WorkerCrashedError" in crashed.error and "again on the retry" in crashed.error
    # two workers killed: the first try's and the retry's (a case may run on for a moment
    # after killing its worker, until its parent-death signal ends it)
    assert len(set(cluster["kills"].read_text().split())) == 2
    assert records["perceptron"].status == "ok"


@pytest.mark.slow
def test_nodes_runs_each_kind_then_prints_and_reports_their_comparison(cluster, tmp_path):
    out = tmp_path / "hw.jsonl"
    done = _harness(
        cluster["env"],
        "run",
        "-m",
        "perceptron",
        "-b",
        "1,2",
        *QUICK_ARGS,
        "--executor",
        "ray",
        "--address",
        cluster["address"],
        "--nodes",
        "kind=test,cpu-only",
        "--out",
        out,
    )
    assert done.returncode == 0, done.stderr
    for kind, name in (("kind=test", "hw-kind_test.jsonl"), ("cpu-only", "hw-cpu-only.jsonl")):
        path = tmp_path / name
        records = _case_lines(path)
        assert [r.status for r in records] == ["ok", "ok"]
        header = next(r for r in iter_records(path) if isinstance(r, RunHeader))
        assert header.executor["nodes"] == kind
    assert (
        f"latency: {tmp_path / 'hw-kind_test.jsonl'} -> {tmp_path / 'hw-cpu-only.jsonl'}"
        in " ".join(done.stdout.split())
    )
    html = (tmp_path / "hw-comparison.html").read_text()
    assert '<section id="comparison">' in html and "Not comparable" not in html


@pytest.mark.slow
def test_two_slots_run_two_streams_at_once_and_record_every_case_once(two_nodes, tmp_path):
    out = tmp_path / "two.jsonl"
    done = _harness(
        dict(os.environ),
        "run",
        "-m",
        "perceptron,mlp,softmax_classifier",
        "-b",
        "1,2",
        *QUICK_ARGS,
        "--executor",
        "ray",
        "--address",
        two_nodes,
        "--out",
        out,
    )
    assert done.returncode == 0, done.stderr
    records = _case_lines(out)
    assert sorted((r.model, r.batch_size) for r in records) == sorted(
        (m, b) for m in ("perceptron", "mlp", "softmax_classifier") for b in (1, 2)
    )
    assert {r.status for r in records} == {"ok"}
    # two streams at once need both slots, and so both nodes
    assert len({r.node["id"] for r in records}) == 2
    header = next(r for r in iter_records(out) if isinstance(r, RunHeader))
    assert header.executor["slots"] == 2


@pytest.mark.parametrize("selector", ["accelerator=H100", "no-such-resource"])
def test_a_selector_no_node_matches_is_a_one_line_usage_error(cluster, tmp_path, selector):
    done = _harness(
        cluster["env"],
        "run",
        "-m",
        "perceptron",
        "--executor",
        "ray",
        "--address",
        cluster["address"],
        "--nodes",
        selector,
        "--out",
        tmp_path / "none.jsonl",
    )
    assert done.returncode == 2
    assert done.stderr.startswith(
        f"harness: error: no node with a {SLOT} matches --nodes "
        f"{selector} (labels: kind=test; resources: "
    )
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "none.jsonl").exists()


@pytest.mark.slow
def test_ctrl_c_cancels_what_is_pending_keeps_what_finished_and_resume_completes(cluster, tmp_path):
    out = tmp_path / "interrupted.jsonl"
    command = [
        sys.executable,
        "-m",
        "harness",
        "run",
        "-m",
        "perceptron,softmax_classifier",
        "-b",
        "1,2,4,8",
        "--max-time",
        "0.3",
        "--warmup-time",
        "0.05",
        "-q",
        "--executor",
        "ray",
        "--address",
        cluster["address"],
        "--out",
        str(out),
    ]
    # A shell that starts a job in the background (CI runners, nohup) leaves SIGINT
    # ignored, and Python then never raises KeyboardInterrupt: give the run the default.
    child = subprocess.Popen(
        command,
        env=cluster["env"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for_cases(child, out, 2)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    before = len(_case_lines(out))
    assert child.returncode == 130 and err.strip().endswith("harness: interrupted"), (
        f"exit {child.returncode} with {before} of 8 cases recorded; stderr: {err}"
    )
    assert 2 <= before < 8
    done = _harness(
        cluster["env"],
        "run",
        "--resume",
        out,
        "-q",
        "--executor",
        "ray",
        "--address",
        cluster["address"],
    )
    assert done.returncode == 0, done.stderr
    keys = [(r.model, r.batch_size) for r in _case_lines(out)]
    assert sorted(keys) == sorted(
        (m, b) for m in ("perceptron", "softmax_classifier") for b in (1, 2, 4, 8)
    )


def test_without_ray_installed_the_executor_is_a_one_line_error():
    code = (
        "import sys; sys.modules['ray'] = None; from harness.cli import main; "
        "sys.exit(main(['run', '-m', 'perceptron', '--executor', 'ray']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr == f"harness: error: {MISSING_RAY}\n"


@pytest.mark.parametrize("option", [["--nodes", "cpu-only"], ["--address", "auto"]])
def test_cluster_options_need_the_ray_executor(capsys, option):
    assert main(["run", "-m", "perceptron", *option]) == 2
    assert f"harness: error: {option[0]} needs --executor ray" in capsys.readouterr().err


def test_an_address_where_no_cluster_listens_is_a_one_line_usage_error(capsys):
    pytest.importorskip("ray", reason="the Ray executor needs pip install 'harness[ray]'")
    assert main(["run", "-m", "perceptron", "--executor", "ray", "--address", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("harness: error: cannot reach the Ray cluster at 127.0.0.1:1: ")
    assert len(err.strip().splitlines()) == 1
