"""The measurement engine's figures and recovery: memory, FLOPs, precision, compile, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.execute.worker import measure_case
from harness.measure.memory import PeakMemory
from harness.measure.timing import MeasureConfig
from harness.models.registry import load_registry
from harness.store.record import CaseRecord, RunHeader
from harness.store.results import CorruptLineWarning, iter_records, load
from harness.sweep.plan import Case
from tests.conftest import TOY_PLUGIN, wait_for_cases

QUICK = MeasureConfig(warmup_time=0.01, max_time=0.02)
QUICK_ARGS = ["--max-time", "0.02", "--warmup-time", "0.01", "-q"]


@pytest.fixture
def toy(plugin_module):
    name = plugin_module(TOY_PLUGIN)
    return name, load_registry([name]).model("toy_linear").spec


def _case(**kw) -> Case:
    return Case("toy_linear", kw.pop("batch_size", 2), dims={"N": 8, "M": 3}, **kw)


def test_cpu_peak_memory_sees_a_known_allocation():
    size = 256 * 2**20
    with PeakMemory(torch.device("cpu")) as memory:
        block = torch.ones(size // 4)
        del block
    assert memory.result["cpu_peak_method"] == "vmhwm-reset"
    assert size * 0.95 <= memory.result["cpu_peak_rss_bytes"] <= size * 1.5


def test_flops_count_the_matmul_forward_and_the_weight_gradient_in_training(toy):
    _, spec = toy
    forward = 2 * 2 * 8 * 3  # 2 * B * in * out
    infer = measure_case(spec, _case(), QUICK)
    train = measure_case(spec, _case(mode="train"), QUICK)
    assert infer.flops["per_step"] == forward
    # the input needs no gradient, so backward adds one matmul: the weight's gradient
    assert train.flops["per_step"] == 2 * forward
    assert train.flops["achieved_per_s"] == pytest.approx(2 * forward / train.latency["median"])


def test_training_records_gradient_and_momentum_bytes(toy):
    _, spec = toy
    record = measure_case(spec, _case(mode="train"), QUICK)
    params = (8 * 3 + 3) * 4
    assert record.memory["param_bytes"] == params
    assert record.memory["grad_bytes"] == params
    assert record.memory["optimizer_state_bytes"] == params  # SGD momentum buffers


def test_cast_stores_weights_in_the_dtype_while_amp_keeps_float32(toy):
    _, spec = toy
    cast = measure_case(spec, _case(dtype="bfloat16", precision="cast"), QUICK)
    amp = measure_case(spec, _case(dtype="bfloat16", precision="amp"), QUICK)
    assert cast.status == amp.status == "ok"
    assert cast.memory["param_bytes"] == (8 * 3 + 3) * 2
    assert amp.memory["param_bytes"] == (8 * 3 + 3) * 4


def test_compiled_case_records_compile_stats_and_speedup_over_its_eager_twin(toy, tmp_path):
    name, _ = toy
    out = tmp_path / "compiled.jsonl"
    code = main(
        [
            "run",
            "-m",
            "toy_linear",
            "-b",
            "2",
            "--compile",
            "none,default",
            "--backend",
            "eager",
            "--isolation",
            "none",
            "--plugin",
            name,
            "--out",
            str(out),
            *QUICK_ARGS,
        ]
    )
    assert code == 0
    eager, compiled = [r for r in iter_records(out) if isinstance(r, CaseRecord)]
    assert (eager.compile_mode, compiled.compile_mode) == ("none", "default")
    stats = compiled.compile
    assert stats["graphs"] == 1 and stats["graph_breaks"] == 0 and stats["recompiles"] == 0
    assert stats["first_call_s"] >= stats["time_s"] >= 0
    assert compiled.speedup_vs_eager == pytest.approx(
        eager.latency["median"] / compiled.latency["median"]
    )
    assert eager.speedup_vs_eager is None


def test_isolation_none_measures_in_process_and_records_failures(toy, tmp_path, capsys):
    name, _ = toy
    out = tmp_path / "inline.jsonl"
    code = main(
        [
            "run",
            "-m",
            "toy_linear,toy_boom",
            "-b",
            "1",
            "--isolation",
            "none",
            "--plugin",
            name,
            "--out",
            str(out),
            *QUICK_ARGS,
        ]
    )
    capsys.readouterr()
    assert code == 1
    frame = load(out).set_index("model")
    assert set(frame["isolation"]) == {"none"}
    assert frame.loc["toy_linear", "status"] == "ok"
    assert frame.loc["toy_boom", "status"] == "error"
    assert "deliberate failure in forward" in frame.loc["toy_boom", "error"]


def test_memory_limit_needs_process_isolation(capsys):
    assert main(["run", "-m", "perceptron", "--isolation", "none", "--memory-limit", "1G"]) == 2
    assert "--memory-limit needs --isolation process" in capsys.readouterr().err


GREEDY = """
    import torch
    from torch import nn
    import harness
    from harness import Input, ModelSpec

    class Greedy(nn.Module):
        '''Holds 32 MiB per sample while it runs: memory grows exactly with the batch.'''
        def forward(self, x):
            scratch = torch.ones(x.shape[0], 8 * 2**20)
            return x * scratch.sum(dim=1, keepdim=True)

    @harness.hookimpl
    def harness_models():
        return [ModelSpec(name="greedy", constructor=Greedy, inputs=[Input("x", "(B, 4)")],
                          outputs=["(B, 4)"])]
"""


def test_auto_batch_search_under_a_memory_limit_finds_the_largest_fitting_batch(
    plugin_module, tmp_path, capsys
):
    name = plugin_module(GREEDY)
    out = tmp_path / "auto.jsonl"
    code = main(
        [
            "run",
            "-m",
            "greedy",
            "-b",
            "auto",
            "--memory-limit",
            "512M",
            "--threads",
            "1",
            "--plugin",
            name,
            "--out",
            str(out),
            *QUICK_ARGS,
        ]
    )
    capsys.readouterr()
    (record,) = [r for r in iter_records(out) if isinstance(r, CaseRecord)]
    search = record.batch_search
    best = search["max_batch_size"]
    assert code == 0 and record.status == "ok" and record.batch_size == best
    # 512 MiB of head-room holds at most 16 samples of 32 MiB
    assert 2 <= best < 16
    assert [best, "ok"] in search["probes"] and [best + 1, "oom"] in search["probes"]


def _case_lines(path: Path) -> list[CaseRecord]:
    return [r for r in iter_records(path) if isinstance(r, CaseRecord)]


@pytest.mark.slow
@pytest.mark.filterwarnings(
    "ignore::harness.store.results.CorruptLineWarning"
)  # the torn line stays
def test_a_run_killed_with_sigkill_resumes_each_remaining_case_exactly_once(tmp_path, capsys):
    out = tmp_path / "killed.jsonl"
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
        "--out",
        str(out),
    ]
    child = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_for_cases(child, out, 2)
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    before = len(_case_lines(out))
    assert 2 <= before < 8
    with out.open("a") as fh:  # as if the kill had torn a line mid-write
        fh.write('{"record": "case", "schema": 1, "model": "perc')
    with pytest.warns(CorruptLineWarning, match=r"killed.jsonl:\d+"):
        assert main(["run", "--resume", str(out), "-q"]) == 0
    assert "already recorded" in capsys.readouterr().out
    cases = _case_lines(out)
    keys = [(r.model, r.batch_size) for r in cases]
    assert sorted(keys) == sorted(
        (m, b) for m in ("perceptron", "softmax_classifier") for b in (1, 2, 4, 8)
    )
    assert len({r.run_id for r in cases}) == 1
    assert {r.status for r in cases} == {"ok"}
    headers = [r for r in iter_records(out) if isinstance(r, RunHeader)]
    assert [h.resumed for h in headers] == [False, True]
    assert json.loads(out.read_text().splitlines()[-1])["record"] == "case"
