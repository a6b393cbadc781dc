"""Faults are data: raising, hanging, aborting and OOM models are recorded; the sweep goes on."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.execute.runner import search_batch_size
from harness.store.results import load

FAULTY = """
    import os, time
    import torch
    from torch import nn
    import harness
    from harness import Input, ModelSpec

    class Faulty(nn.Module):
        def __init__(self, kind):
            super().__init__()
            self.kind = kind
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            if self.kind == "hang":
                time.sleep(60)
            if self.kind == "abort":
                os.abort()
            if self.kind == "oom" and x.shape[0] >= 4:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return self.lin(x)

    @harness.hookimpl
    def harness_models():
        return [ModelSpec(name=f"faulty_{k}", constructor=Faulty, kwargs={"kind": k},
                          inputs=[Input("x", "(B, 4)")], outputs=["(B, 4)"],
                          batch_sizes=(1, 4, 8)) for k in ("hang", "abort", "oom")]
"""


def test_hang_abort_and_oom_are_recorded_and_the_sweep_goes_on(plugin_module, tmp_path, capsys):
    name = plugin_module(FAULTY)
    out = tmp_path / "faults.jsonl"
    code = main(
        [
            "run",
            "-m",
            "faulty_hang,faulty_abort,faulty_oom,perceptron",
            "-b",
            "1,4,8",
            "--plugin",
            name,
            "--timeout",
            "3",
            "--max-time",
            "0.01",
            "--warmup-time",
            "0.01",
            "--out",
            str(out),
            "-q",
        ]
    )
    capsys.readouterr()
    assert code == 1
    frame = load(out)
    status = {(m, b): s for m, b, s in zip(frame["model"], frame["batch_size"], frame["status"])}
    assert {status[("faulty_hang", b)] for b in (1, 4, 8)} == {"timeout"}
    assert {status[("faulty_abort", b)] for b in (1, 4, 8)} == {"crashed"}
    assert "SIGABRT" in frame[frame["model"] == "faulty_abort"]["error"].iloc[0]
    assert [status[("faulty_oom", b)] for b in (1, 4, 8)] == ["ok", "oom", "skipped"]
    assert {status[("perceptron", b)] for b in (1, 4, 8)} == {"ok"}


def test_batch_search_doubles_then_bisects_to_the_largest_fitting_size():
    seen = []

    def probe(batch):
        seen.append(batch)
        return "ok" if batch <= 37 else "oom"

    best, probes = search_batch_size(probe, limit=1024)
    assert best == 37
    assert seen[:7] == [1, 2, 4, 8, 16, 32, 64]
    assert [38, "oom"] in probes and [37, "ok"] in probes


def test_batch_search_stops_at_the_limit_and_reports_none_when_nothing_fits():
    assert search_batch_size(lambda b: "ok", limit=100)[0] == 100
    assert search_batch_size(lambda b: "oom", limit=100) == (None, [[1, "oom"]])


def test_asking_for_an_absent_device_is_a_usage_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = main(["run", "-m", "mlp", "--devices", "cuda"])
    assert code == 2
    assert "device 'cuda' is not available on this machine" in capsys.readouterr().err
