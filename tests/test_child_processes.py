"""A case's processes: what a model starts dies with its case, a killed harness leaves no
orphan talking, a model's prints stay out of the tables, and --debug shows tracebacks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.store.results import load

RUN = ["--timeout", "60", "--max-time", "0.01", "--warmup-time", "0.01", "-b", "1", "-q"]


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaps has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _plugin(folder: Path, name: str, forward: str) -> str:
    """A plugin module in ``folder`` with one model, ``name``, whose forward is ``forward``."""
    (folder / f"{name}.py").write_text(
        textwrap.dedent("""
        import os, sys, time
        from pathlib import Path
        from torch import nn
        import harness
        from harness import Input, ModelSpec

        FOLDER = Path(__file__).parent

        class Model(nn.Module):
            def forward(self, x):
        {forward}
                return x

        @harness.hookimpl
        def harness_models():
            return [ModelSpec(name={name!r}, constructor=Model, inputs=[Input("x", "(B, 4)")],
                              outputs=["(B, 4)"])]
    """).format(forward=textwrap.indent(textwrap.dedent(forward), " " * 8), name=name)
    )
    return name


def _harness(folder: Path, *args: str, **popen: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), *sys.path])}
    env.pop("HARNESS_PLUGINS", None)
    return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=folder, env=env, **popen)


def test_a_model_that_forks_and_hangs_leaves_no_process_after_its_timeout(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.syspath_prepend(str(tmp_path))
    name = _plugin(
        tmp_path,
        "forks_and_hangs",
        """
        child = os.fork()
        if child == 0:
            time.sleep(120)
            os._exit(0)
        (FOLDER / "grandchild").write_text(str(child))
        time.sleep(120)
    """,
    )
    out = tmp_path / "run.jsonl"
    code = main(["run", "--plugin", name, "-m", name, *RUN, "--timeout", "3", "--out", str(out)])
    capsys.readouterr()
    grandchild = int((tmp_path / "grandchild").read_text())
    try:
        assert code == 1 and list(load(out)["status"]) == ["timeout"]
        assert _gone_within(grandchild, 5), "the model's own child outlived its case"
    finally:
        if _alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)


def test_killing_the_harness_ends_its_case_at_once_and_quietly(tmp_path):
    name = _plugin(
        tmp_path,
        "slow_to_answer",
        """
        (FOLDER / "case").write_text(str(os.getpid()))
        time.sleep(4)
    """,
    )
    with (tmp_path / "stderr").open("w") as stderr:
        run = _harness(
            tmp_path,
            "run",
            "--plugin",
            name,
            "-m",
            name,
            *RUN,
            "--out",
            str(tmp_path / "run.jsonl"),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 120
            while not (tmp_path / "case").exists() and run.poll() is None:
                assert time.monotonic() < deadline, "the case never started"
                time.sleep(0.05)
            case = int((tmp_path / "case").read_text())
        finally:
            run.kill()
            run.wait()
    gone = _gone_within(case, 2)
    time.sleep(0 if gone else 5)  # an orphan would finish its call, then fail to answer
    try:
        assert gone, "the case went on running without its harness"
        assert "Traceback" not in (tmp_path / "stderr").read_text()
    finally:
        if _alive(case):
            os.kill(case, signal.SIGKILL)


CHATTY = """
    print("chatter " * 20000, flush=True)
    os.write(2, b"from C: " + b"x" * 100 + b"\\n")
    print("last words before failing", flush=True)
    raise RuntimeError("the model gave up")
"""


@pytest.fixture(scope="module")
def chatty_run(tmp_path_factory):
    """A process-isolated ``run --debug`` of a model that prints 180 KB and raises."""
    folder = tmp_path_factory.mktemp("chatty")
    name = _plugin(folder, "chatty_model", CHATTY)
    out = folder / "run.jsonl"
    run = _harness(
        folder,
        "run",
        "--plugin",
        name,
        "-m",
        name,
        *RUN,
        "--debug",
        "--out",
        str(out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = run.communicate(timeout=300)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    return stdout, stderr, [r for r in records if r.get("record") == "case"]


def test_a_models_prints_stay_off_the_harness_stdout_and_their_tail_is_in_its_record(chatty_run):
    stdout, _, records = chatty_run
    assert "chatter" not in stdout and "last words" not in stdout
    assert len(stdout) < 5000  # the table and its notes
    (record,) = records
    assert record["status"] == "error"
    assert record["output_tail"].rstrip().endswith("last words before failing")
    assert "from C: xxx" in record["output_tail"]  # file descriptor 2, not only sys.stderr
    assert len(record["output_tail"].encode()) <= 4096


def test_debug_shows_where_the_plugin_raised(chatty_run):
    _, stderr, (record,) = chatty_run
    assert "chatty_model.py" in stderr and "RuntimeError: the model gave up" in stderr
    assert "chatty_model.py" in record["traceback"]
    assert "last output:" in stderr and len(stderr) < 16000  # the output's tail, not all of it


def test_without_isolation_a_models_prints_stay_off_stdout_and_their_tail_is_recorded(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.syspath_prepend(str(tmp_path))
    name = _plugin(tmp_path, "chatty_inline", CHATTY)
    out = tmp_path / "run.jsonl"
    code = main(
        ["run", "--plugin", name, "-m", name, *RUN, "--isolation", "none", "--out", str(out)]
    )
    assert code == 1
    assert "chatter" not in capsys.readouterr().out
    (record,) = [json.loads(line) for line in out.read_text().splitlines()[1:]]
    assert record["output_tail"].rstrip().endswith("last words before failing")
