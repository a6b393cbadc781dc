"""The command line as a user meets it: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.store.results import load
from tests.conftest import TOY_PLUGIN

FAST = ["--max-time", "0.01", "--warmup-time", "0.01"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own exits (usage errors, --help)
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_list_json_describes_every_model(capsys, registry):
    code, out, _ = run_cli(capsys, "list", "--json")
    rows = json.loads(out)
    assert code == 0
    assert [r["name"] for r in rows] == list(registry.models)
    gen = next(r for r in rows if r["name"] == "dcgan_generator")
    assert gen["plugin"] == "gan" and gen["params"] == 3_576_704
    assert gen["inputs"] == [
        {"name": "z", "shape": "(B, NZ, 1, 1)", "dtype": "float", "high": None}
    ]
    assert gen["outputs"] == ["(B, NC, 4 * 2 ** (I + 1), 4 * 2 ** (I + 1))"]
    assert {"gan", "all", "smoke"} <= set(gen["suites"])
    assert gen["kwargs"] == {"nz": 100, "ngf": 64, "nc": 3, "depth": 3}


def test_list_table_for_a_suite(capsys):
    code, out, _ = run_cli(capsys, "list", "--suite", "gan")
    assert code == 0
    assert "5 models" in out and "pix2pix_unet" in out and "54.4M" in out
    assert "alexnet" not in out


def test_check_json_reports_expected_and_observed_at_batch_two(capsys):
    code, out, _ = run_cli(capsys, "check", "--model", "vae,dcgan_chain", "--json")
    results = {r["name"]: r for r in json.loads(out)}
    assert code == 0
    assert results["vae"]["ok"] and results["vae"]["training"] == "ok"
    assert results["vae"]["expected"] == results["vae"]["observed"] == [[2, 784], [2, 20], [2, 20]]
    assert results["dcgan_chain"]["observed"] == [[2, 64, 32, 32]]
    assert results["dcgan_chain"]["params"] == 2_753_408


def test_check_reports_a_shape_mismatch_with_expression_values_and_actual(capsys, plugin_module):
    name = plugin_module("""
        import harness
        from harness import Dim, Input, ModelSpec
        from torch import nn

        @harness.hookimpl
        def harness_models():
            return [ModelSpec(name="liar", constructor=nn.Linear, kwargs={"in_features": 4},
                              inputs=[Input("x", "(B, 4)")], outputs=["(B, 2 * N)"],
                              dims={"N": Dim(3, kwarg="out_features")})]
    """)
    code, out, _ = run_cli(capsys, "check", "--model", "liar", "--plugin", name)
    assert code == 1
    assert "liar: output 0 at B=1: expected (B, 2 * N) = (1, 6), got (1, 3)" in out


def test_check_at_a_swept_dimension(capsys):
    code, out, _ = run_cli(capsys, "check", "-m", "dcgan_discriminator", "--dim", "H=128", "--json")
    (result,) = json.loads(out)
    assert code == 0 and result["observed"] == [[2, 1, 5, 1]]


def test_run_writes_results_and_a_table(capsys, tmp_path):
    out_file = tmp_path / "run.jsonl"
    code, out, err = run_cli(
        capsys,
        "run",
        "--model",
        "perceptron",
        "--batch-sizes",
        "1,4",
        "--dim",
        "NIN=10,20",
        "--out",
        str(out_file),
        *FAST,
    )
    assert code == 0, err
    assert "4 cases: 4 ok, 0 failed, 0 skipped" in out and str(out_file) in out
    frame = load(out_file)
    assert len(frame) == 4
    assert sorted(zip(frame["batch_size"], frame["dims"].map(lambda d: d["NIN"]))) == [
        (1, 10),
        (1, 20),
        (4, 10),
        (4, 20),
    ]
    assert set(frame["status"]) == {"ok"}
    assert (frame["throughput"] == frame["batch_size"] / frame["latency.median"]).all()
    assert "[1/4] perceptron[B=1,NIN=10]" in err


def test_run_default_output_lands_under_results(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, _ = run_cli(capsys, "run", "-m", "perceptron", "-b", "1", *FAST)
    (written,) = (tmp_path / "results").glob("*-perceptron.jsonl")
    assert code == 0 and len(load(written)) == 1


def test_a_failing_model_is_recorded_and_the_sweep_goes_on(capsys, tmp_path, plugin_module):
    name = plugin_module(TOY_PLUGIN)
    out_file = tmp_path / "run.jsonl"
    code, out, _ = run_cli(
        capsys,
        "run",
        "--model",
        "toy_boom,toy_linear",
        "--plugin",
        name,
        "--out",
        str(out_file),
        *FAST,
    )
    assert code == 1
    frame = load(out_file).set_index("model")
    assert frame.loc["toy_boom", "status"] == "error"
    assert frame.loc["toy_boom", "error"] == "RuntimeError: deliberate failure in forward"
    assert (frame.loc["toy_linear", "status"] == "ok").all()
    assert "3 cases: 2 ok, 1 failed, 0 skipped" in out


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["run", "--suite", "gann"], ["unknown suite 'gann'", "did you mean 'gan'"]),
        (["run", "--model", "alexnett"], ["unknown model 'alexnett'", "did you mean 'alexnet'"]),
        (["check", "--model", "vea"], ["unknown model 'vea'", "did you mean 'vae'"]),
        (["run", "--suite", "gan", "--model", "mlp"], ["'mlp' is not in suite 'gan'"]),
        (["run"], ["nothing to run", "--suite"]),
        (["run", "-m", "mlp", "--dim", "H=64"], ["no selected model has a dimension 'H'"]),
        (
            ["run", "-m", "unet2", "--dim", "H=63"],
            ["H=63 breaks its constraint", "2 * ((H - 2) // 2 + 1) == H"],
        ),
        (["run", "-m", "mlp", "--batch-sizes", "0,2"], ["integers from 1 to", "'0,2'"]),
        (["run", "-m", "mlp", "--batch-sizes", "abc"], ["--batch-sizes"]),
        (["run", "-m", "mlp", "--dim", "H"], ["NAME=VALUE"]),
        (["run", "-m", "mlp", "--dim", "H=x"], ["dimension H", "integers from 1 to 2**62"]),
        (["run", "-m", "mlp", "--max-time", "-1"], ["number of seconds above 0"]),
        (["run", "-m", "mlp", "--target-precision", "150%"], ["fraction"]),
        (["frobnicate"], ["invalid choice"]),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys, argv, fragments):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, *fragments)


def test_unwritable_output_path_fails_before_measuring(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, _, err = run_cli(capsys, "run", "-m", "mlp", "--out", str(blocker / "x.jsonl"), *FAST)
    assert code == 1
    assert_one_line_error(err, "cannot write results to", "--out")


def test_broken_plugin_exits_1_with_one_line(capsys, plugin_module):
    name = plugin_module("import no_such_dependency_q\n")
    code, _, err = run_cli(capsys, "list", "--plugin", name)
    assert code == 1
    assert_one_line_error(err, f"plugin module '{name}' failed to import", "ModuleNotFoundError")


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(Exception, match="unknown suite"):
        main(["run", "--suite", "nope", "--debug"])


def _script() -> str:
    found = shutil.which("harness", path=str(Path(sys.executable).parent))
    assert found, "the harness console script is installed with the package"
    return found


def test_console_script_exit_codes_and_stderr(tmp_path):
    ok = subprocess.run(
        [_script(), "list", "--suite", "gan", "--json"], capture_output=True, text=True
    )
    assert ok.returncode == 0 and len(json.loads(ok.stdout)) == 5
    bad = subprocess.run([_script(), "run", "--suite", "gann"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr == (
        "harness: error: unknown suite 'gann'; did you mean 'gan'? (available: "
        "all, autoencoders, classifiers, gan, segmentation, sequence, smoke, transformers)\n"
    )
    assert bad.stdout == ""


@pytest.mark.slow
def test_smoke_suite_runs_every_model_end_to_end(tmp_path, registry):
    out_file = tmp_path / "smoke.jsonl"
    done = subprocess.run(
        [_script(), "run", "--suite", "smoke", "--out", str(out_file)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    frame = load(out_file)
    assert sorted(frame["model"]) == sorted(registry.models)
    assert set(frame["status"]) == {"ok"} and set(frame["suite"]) == {"smoke"}
    assert (frame["latency.n"] >= 6).all()
    assert frame["env.threads"].iloc[0] >= 1 and frame["env.hostname"].iloc[0]
