"""The Python API: the same sweep, records and messages as the command line, frames back."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile

import pandas as pd
import pytest
import torch

import harness
from harness.cli import main
from harness.models.register import registered_in
from harness.store.results import load

QUICK = {"max_time": 0.05, "min_time": 0.02, "warmup_time": 0.02}
QUICK_ARGS = ["--max-time", "0.05", "--min-time", "0.02", "--warmup-time", "0.02"]
# what differs between two runs of one case: when and how fast it ran, and where it went
VARYING = (
    "file",
    "run_id",
    "env.time",
    "latency.",
    "heartbeat.",
    "throughput",
    "flops.",
    "memory.",
)


def test_run_gives_the_cases_and_columns_the_cli_records_for_the_same_sweep(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out = tmp_path / "cli.jsonl"
    select = ["-m", "perceptron", "-b", "2", "--dtype", "bfloat16", "--mode", "infer,train"]
    assert main(["run", *select, *QUICK_ARGS, "-q", "--out", str(out)]) == 0
    cli = load(out)
    api = harness.run(
        models="perceptron", batch_sizes=2, dtypes="bfloat16", mode=["infer", "train"], **QUICK
    )
    assert list(api.columns) == list(cli.columns)
    steady = [c for c in cli.columns if not c.startswith(VARYING) and not c.startswith("env.")]
    pd.testing.assert_frame_equal(api[steady], cli[steady])
    assert list(api["status"]) == ["ok", "ok"] and api["settings.isolation"][0] == "process"
    assert not list(scratch.glob("harness-*"))  # without out=, the results file was temporary


def test_out_keeps_the_results_file_and_load_reads_it_back(tmp_path):
    out = tmp_path / "kept.jsonl"
    cases = harness.run(models="perceptron", batch_sizes=[1, 2], isolation="none", out=out, **QUICK)
    loaded = harness.load(out)
    assert list(loaded["batch_size"]) == list(cases["batch_size"]) == [1, 2]
    run_id = cases["run_id"][0]
    assert list(harness.load(f"{out}#{run_id[:6]}")["run_id"].unique()) == [run_id]


def test_compare_judges_frames_and_files_alike(tmp_path):
    out = tmp_path / "base.jsonl"
    base = harness.run(models="perceptron", batch_sizes=2, isolation="none", out=out, **QUICK)
    times = [c for c in base.columns if c.startswith("latency.") and base[c].dtype == float]
    slower = base.assign(
        **{c: base[c] * 2 for c in times},
        **{"latency.samples": [[s * 2 for s in base["latency.samples"][0]]]},
    )
    table = harness.compare(base, slower, threshold="3%")
    assert table["ratio"][0] == pytest.approx(2, rel=0.05)
    assert harness.compare(str(out), base)["ratio"][0] == pytest.approx(1)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: harness.run(models="perceptorn"), "unknown model 'perceptorn'; did you mean"),
        (
            lambda: harness.run(models="perceptron", dtypes="bf16"),
            "argument --dtypes/--dtype: bf16 not in float32, float16, bfloat16",
        ),
        (lambda: harness.run(models="perceptron", batch_sizes=0), "--batch-sizes"),
        (lambda: harness.run(models="perceptron", dims={"NIN": "x"}), "--dim"),
        (
            lambda: harness.run(models="perceptron", speed=3),
            "harness.run() has no argument 'speed'",
        ),
        (lambda: harness.run(models="perceptron", resume="r.jsonl"), "does not take resume"),
        (lambda: harness.compare("a.jsonl", "b.jsonl", threshold="lots"), "--threshold"),
        (lambda: harness.compare("missing.jsonl", "b.jsonl"), "missing.jsonl does not exist"),
        (lambda: harness.load(), "needs a results file"),
    ],
)
def test_a_bad_argument_raises_the_message_the_cli_prints(tmp_path, monkeypatch, call, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(harness.HarnessError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()
    assert not list(tmp_path.iterdir())  # nothing measured, nothing written


def test_the_cli_prints_the_same_message_for_the_same_mistake(capsys):
    with pytest.raises(harness.UsageError) as raised:
        harness.run(models="perceptron", dtypes="bf16")
    with pytest.raises(SystemExit) as exited:
        main(["run", "-m", "perceptron", "--dtypes", "bf16"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip() == f"harness run: error: {raised.value}"


def test_a_script_without_a_main_guard_measures_each_case_once(tmp_path):
    (tmp_path / "bench.py").write_text(
        "import harness\n"
        "print('script started', flush=True)\n"
        "cases = harness.run(models='perceptron', batch_sizes=[1, 2], max_time=0.02,\n"
        "                    min_time=0.01, warmup_time=0.01)\n"
        "print(list(cases['status']))\n"
    )
    done = subprocess.run(
        [sys.executable, "bench.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["script started", "['ok', 'ok']"], done.stderr


class _Scale(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(16))

    def forward(self, x):
        return x * self.weight, x.sum(dim=1)


def test_bench_measures_a_module_without_a_plugin_and_leaves_it_as_it_was():
    module = _Scale()
    cases = harness.bench(
        module, torch.randn(4, 16), batch_sizes=[1, 4], dtypes=["float32", "bfloat16"],
        mode=["infer", "train"], **QUICK,
    )  # fmt: skip
    assert len(cases) == 8 and set(cases["status"]) == {"ok"}, cases["error"].tolist()
    assert set(cases["model"]) == {"scale"} and set(cases["batch_size"]) == {1, 4}
    assert set(cases["settings.isolation"]) == {"none"}
    # every case had its own copy: the module is still float32, untrained
    assert module.weight.dtype == torch.float32 and torch.equal(module.weight, torch.ones(16))


def test_bench_takes_a_factory_and_integer_inputs_and_checks_the_outputs_shapes():
    def factory():
        return torch.nn.Sequential(torch.nn.Embedding(50, 8), torch.nn.Flatten())

    tokens = torch.randint(0, 50, (2, 6))
    cases = harness.bench(factory, tokens, name="tokens", batch_sizes=[3], **QUICK)
    assert list(cases["status"]) == ["ok"] and cases["model"][0] == "tokens"
    assert cases["batch_size"][0] == 3  # random token ids below 50 at a batch size not given


def test_bench_builds_an_importable_factory_in_a_fresh_process_per_case_like_run():
    from harness_plugins import dense

    benched = harness.bench(
        dense.perceptron, torch.randn(2, 100), name="perceptron", batch_sizes=[1, 2], **QUICK
    )
    ran = harness.run(models="perceptron", batch_sizes=[1, 2], **QUICK)
    assert set(benched["settings.isolation"]) == {"process"} and set(benched["status"]) == {"ok"}
    identity = ["model", "batch_size", "dtype", "mode", "status", "params", "flops.per_step"]
    assert benched[identity].equals(ran[identity])


def test_a_portable_spec_is_rebuilt_with_every_field_and_shape():
    from harness.models.portable import from_portable, import_path, to_portable
    from harness_plugins import dense

    def nested():
        return torch.nn.Identity()

    assert import_path(lambda: None) is None and import_path(nested) is None
    assert import_path(dense.mlp) == "harness_plugins.dense:mlp"
    registered = next(s for s in registered_in(dense) if s.name == "mlp")
    data = json.loads(json.dumps(to_portable(registered)))
    rebuilt = from_portable(data)
    for field in ("name", "inputs", "outputs", "dims", "constraints", "kwargs", "batch_sizes"):
        assert getattr(rebuilt, field) == getattr(registered, field), field
    assert rebuilt.constructor is registered.constructor


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: harness.bench(_Scale(), [1, 2]), "example_inputs must be a tensor"),
        (
            lambda: harness.bench(_Scale(), torch.ones(2, 16), isolation="process"),
            "only from a factory defined in an importable module",
        ),
        (
            lambda: harness.bench(_Scale(), (torch.ones(2, 16), torch.ones(3, 16))),
            "first dimensions differ (2, 3)",
        ),
        (lambda: harness.bench(lambda: 3, torch.ones(2, 16)), "returned a int object, not"),
        (lambda: harness.bench(_Scale(), torch.ones(2, 16), models="mlp"), "takes no models"),
        (lambda: harness.bench(_Scale(), torch.ones(2, 16), dtypes="bf16"), "bf16 not in"),
    ],
)
def test_bench_refuses_what_it_cannot_measure_in_one_line(call, message):
    with pytest.raises(harness.UsageError, match=re.escape(message)):
        call()
