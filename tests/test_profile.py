"""harness profile: traces that TensorBoard's PyTorch Profiler plugin serves, the summary's
tables, compiled cases, the CUDA memory snapshot, and bad input."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from harness.store.results import load
from tests.test_cli import FAST, _script, assert_one_line_error, run_cli

TENSORBOARD_DEADLINE_S = 60  # the plugin finds runs every 10 s and parses them in the background
RUN = "dcgan_generator-B=2-I=3-NC=3-NGF=64-NZ=100"  # the case's folder: TensorBoard's run
UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
BREAKY_PLUGIN = """
    import torch
    from torch import nn
    import harness
    from harness import Input, ModelSpec

    class Breaky(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(16, 16), nn.Linear(16, 16)

        def forward(self, x):
            x = torch.relu(self.a(x))
            torch._dynamo.graph_break()
            return torch.tanh(self.b(x))

    @harness.hookimpl
    def harness_models():
        return [ModelSpec(name="breaky", constructor=Breaky, inputs=[Input("x", "(B, 16)")],
                          outputs=["(B, 16)"], batch_sizes=(4,))]
"""


@pytest.fixture(scope="module")
def dcgan(tmp_path_factory) -> tuple[Path, str]:
    """``harness profile`` of the DCGAN generator at B=2, as a user runs it: its folder
    of profiles and its stdout."""
    out = tmp_path_factory.mktemp("profiles")
    done = subprocess.run(
        [
            _script(),
            "profile",
            "--model",
            "dcgan_generator",
            "--batch-size",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return out, done.stdout


def test_profile_writes_a_chrome_trace_per_case_under_a_run_folder(dcgan):
    out, stdout = dcgan
    (run,) = out.iterdir()
    assert run.name.endswith("-dcgan_generator")
    (trace,) = (run / RUN).glob("dcgan_generator.*.pt.trace.json")
    events = json.loads(trace.read_text())["traceEvents"]
    names = {e.get("name") for e in events}
    assert {"aten::conv_transpose2d", "aten::batch_norm", "aten::tanh", "[memory]"} <= names
    assert sum(str(n).startswith("ProfilerStep#") for n in names) == 5
    assert f"trace (TensorBoard; also opens in ui.perfetto.dev): {trace}" in stdout
    assert stdout.rstrip().endswith(f"view: tensorboard --logdir {run}")


def test_summary_tables_hold_the_models_main_operators(dcgan):
    _, stdout = dcgan
    by_time, by_memory = stdout.split("self CPU time, top 10 operators over 5 steps")[1].split(
        "CPU memory allocated, top 10 operators over 5 steps"
    )
    assert "dcgan_generator[B=2,I=3,NC=3,NGF=64,NZ=100]: 5 profiled steps of" in stdout
    assert "aten::_convolution" in by_time and "aten::native_batch_norm" in by_time
    assert "ProfilerStep" not in by_time
    memory_rows = [line for line in by_memory.splitlines() if "aten::" in line]
    assert any("aten::conv_transpose2d" in row for row in memory_rows)
    assert any("aten::empty " in row for row in memory_rows)  # where the bytes are allocated
    assert "memory: peak " in by_memory
    assert "allocated on cpu during the profiled steps" in by_memory
    assert "compiled with" not in stdout  # eager


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def tensorboard(dcgan, tmp_path) -> Iterator[str]:
    """TensorBoard with the profiler plugin on the profile's run, on a free loopback port;
    yields its base URL and is always stopped."""
    executable = shutil.which("tensorboard", path=str(Path(sys.executable).parent))
    assert executable, "the dev extra installs TensorBoard (pip install -e '.[dev]')"
    (run,) = dcgan[0].iterdir()
    port = _free_port()
    log = (tmp_path / "tensorboard.log").open("w")
    server = subprocess.Popen(
        [executable, "--logdir", str(run), "--port", str(port), "--host", "127.0.0.1"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield f"http://127.0.0.1:{port}/data/plugin/pytorch_profiler"
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # its session: the plugin's loader processes too
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _get(base: str, route: str, deadline: float, **query: str):
    """The JSON at ``route``, retried until TensorBoard is up and has loaded the run."""
    url = f"{base}/{route}?{urllib.parse.urlencode(query)}"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = response.read()
                if response.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
            data = json.loads(body)
            if route != "runs" or RUN in data["runs"]:
                return data
            problem = f"run {RUN} not loaded yet: {data}"
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            problem = f"no answer: {exc}"
        if time.monotonic() > deadline:
            raise AssertionError(f"TensorBoard at {url}: {problem}")
        time.sleep(0.5)


def test_tensorboard_profiler_plugin_serves_the_profile(tensorboard, dcgan):
    stdout = dcgan[1]
    deadline = time.monotonic() + TENSORBOARD_DEADLINE_S
    assert RUN in _get(tensorboard, "runs", deadline)["runs"]
    assert _get(tensorboard, "views", deadline, run=RUN)[:2] == ["Overview", "Operator"]
    (worker,) = _get(tensorboard, "workers", deadline, run=RUN, view="Overview")
    assert worker == "dcgan_generator"
    (span,) = _get(tensorboard, "spans", deadline, run=RUN, worker=worker)
    operators = _get(
        tensorboard,
        "operation",
        deadline,
        run=RUN,
        worker=worker,
        span=span,
        view="Operator",
        group_by="Operation",
    )
    total = {name for name, _ in operators["host_total_time"]["rows"]}
    assert {
        "aten::conv_transpose2d",
        "aten::convolution",
        "aten::batch_norm",
        "aten::relu_",
        "aten::tanh",
    } <= total
    table = _get(
        tensorboard,
        "operation/table",
        deadline,
        run=RUN,
        worker=worker,
        span=span,
        view="Operator",
        group_by="Operation",
    )
    calls = {row["name"]: row["calls"] for row in table["data"]}
    assert calls["aten::conv_transpose2d"] == 5 * 5  # five layers, five profiled steps
    assert calls["aten::tanh"] == 5
    # the plugin's Memory view finds the CPU peak that the summary printed
    curve = _get(tensorboard, "memory_curve", deadline, run=RUN, worker=worker, span=span)
    plugin_peak = float(re.search(r"([\d.]+)MB", curve["metadata"]["peaks"]["CPU"])[1])
    value, unit = re.search(r"memory: peak ([\d.]+) (\w+)", stdout).groups()
    assert plugin_peak == pytest.approx(float(value) * UNITS[unit] / 2**20, abs=0.1)


def test_compiled_profile_notes_graph_breaks(capsys, plugin_module, tmp_path):
    name = plugin_module(BREAKY_PLUGIN)
    code, out, err = run_cli(
        capsys,
        "profile",
        "-m",
        "breaky",
        "--plugin",
        name,
        "--compile",
        "default",
        "--backend",
        "eager",
        "--out",
        str(tmp_path),
        "-q",
    )
    assert code == 0, err
    assert "compiled with eager: 2 graphs, 1 graph break" in out
    assert "graph break (1x): " in out and "graph_break()" in out
    assert "generated kernels in the profile: 0" in out  # the eager backend generates none
    assert "Torch-Compiled Region: 1/0" in out


@pytest.mark.slow
def test_inductor_profile_shows_its_generated_kernels(plugin_module, tmp_path):
    name = plugin_module(BREAKY_PLUGIN)
    done = subprocess.run(
        [
            _script(),
            "profile",
            "-m",
            "breaky",
            "--plugin",
            name,
            "--compile",
            "default",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "compiled with inductor: 2 graphs, 1 graph break" in done.stdout
    assert "generated kernels in the profile: 2" in done.stdout
    assert "cpp_fused_relu" in done.stdout and "cpp_fused_tanh" in done.stdout
    (trace,) = tmp_path.glob("*-breaky/breaky-B=4-compile=default/breaky.*.pt.trace.json")
    assert "graph_0_cpp_fused_relu_0" in trace.read_text()


def test_with_stack_puts_python_frames_in_the_trace_not_in_the_tables(capsys, tmp_path):
    code, out, err = run_cli(
        capsys, "profile", "-m", "mlp", "-b", "2", "--with-stack", "--out", str(tmp_path), "-q"
    )
    assert code == 0, err
    (trace,) = tmp_path.glob("*-mlp/mlp-B=2-NHID=1024-NIN=100-NOUT=20/mlp.*.pt.trace.json")
    frames = [
        e["name"]
        for e in json.loads(trace.read_text())["traceEvents"]
        if e.get("cat") == "python_function"
    ]
    assert any("forward" in name for name in frames)
    assert "aten::addmm" in out and ".py(" not in out


def test_run_profile_profiles_each_case_beside_the_results(capsys, tmp_path):
    out_file = tmp_path / "sweep.jsonl"
    code, out, err = run_cli(
        capsys, "run", "-m", "mlp", "-b", "1,2", "--profile", "--out", str(out_file), *FAST
    )
    assert code == 0, err
    assert len(load(out_file)) == 2
    profiles = tmp_path / "profiles" / "sweep"
    for case in ("mlp-B=1-NHID=1024-NIN=100-NOUT=20", "mlp-B=2-NHID=1024-NIN=100-NOUT=20"):
        assert len(list((profiles / case).glob("mlp.*.pt.trace.json"))) == 1
    assert "mlp[B=1,NHID=1024,NIN=100,NOUT=20]: 5 profiled steps" in out
    assert "mlp[B=2,NHID=1024,NIN=100,NOUT=20]: 5 profiled steps" in out
    assert "aten::addmm" in out
    assert out.rstrip().endswith(f"view: tensorboard --logdir {profiles}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_profile_times_kernels_and_writes_the_allocator_snapshot(capsys, tmp_path):
    code, out, err = run_cli(
        capsys,
        "profile",
        "-m",
        "dcgan_generator",
        "-b",
        "2",
        "--device",
        "cuda",
        "--out",
        str(tmp_path),
        "-q",
    )
    assert code == 0, err
    assert "self CUDA time, top 10 operators and kernels over 5 steps" in out
    assert "CUDA memory allocated, top 10 operators over 5 steps" in out
    (case,) = tmp_path.glob("*-dcgan_generator/dcgan_generator-B=2-cuda")
    assert (case / "cuda_memory_snapshot.pickle").stat().st_size > 0
    assert "Active Memory Timeline" in (case / "cuda_memory.html").read_text()


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (
            ["profile", "--model", "dcgan_generatr"],
            ["unknown model 'dcgan_generatr'", "did you mean 'dcgan_generator'"],
        ),
        (
            ["profile", "-m", "dcgan_discriminator", "--dim", "H=64,128"],
            ["one value per dimension", "H has several"],
        ),
        (["profile", "-m", "mlp", "--batch-size", "0"], ["one integer from 1 to"]),
        (["profile", "-m", "mlp", "--compile", "fast"], ["invalid choice: 'fast'"]),
        (["profile"], ["--model"]),
    ],
)
def test_profile_usage_errors_exit_2_with_one_line(capsys, argv, fragments):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, *fragments)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_profiling_an_absent_device_is_a_usage_error(capsys):
    code, _, err = run_cli(capsys, "profile", "-m", "mlp", "--device", "cuda")
    assert code == 2
    assert_one_line_error(err, "device 'cuda' is not available on this machine")


def test_unwritable_profile_folder_fails_before_profiling(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, out, err = run_cli(capsys, "profile", "-m", "mlp", "--out", str(blocker / "p"))
    assert code == 1 and out == ""
    assert_one_line_error(
        err, f"cannot write profiles to {blocker / 'p'}", "choose a writable folder with --out"
    )


@pytest.mark.parametrize(
    "argv", [["profile", "-m", "mlp"], ["run", "-m", "mlp", "--profile", *FAST]]
)
def test_without_the_profile_extra_the_trace_is_written_and_a_chrome_trace_viewer_named(
    tmp_path, argv
):
    """TensorBoard and the plugin made unimportable, as if never installed."""
    (tmp_path / "sitecustomize.py").write_text(
        textwrap.dedent("""
        import sys

        class Uninstalled:
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in ("tensorboard", "torch_tb_profiler"):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, Uninstalled())
    """)
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([_script(), *argv], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.glob("results/**/*.pt.trace.json"))
    hint = done.stdout.rstrip().splitlines()[-1]
    assert hint.startswith(
        "view: open a *.pt.trace.json under it in ui.perfetto.dev or "
        "chrome://tracing; for TensorBoard's view, pip install "
        "'harness[profile]'"
    ), hint
