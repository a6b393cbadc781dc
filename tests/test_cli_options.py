"""Option values and forms as a user gives them: out-of-range numbers, --out folders,
plugins before or after the command, --resume of a run with --plugin, --json, --help."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.store.results import load
from tests.test_cli import FAST, assert_one_line_error, run_cli

PLUGIN = """
    import harness
    from harness import Input, ModelSpec
    from torch import nn

    @harness.hookimpl
    def harness_models():
        return [ModelSpec(name="{name}", constructor=nn.Linear,
                          kwargs={{"in_features": 4, "out_features": 2}},
                          inputs=[Input("x", "(B, 4)")], outputs=["(B, 2)"],
                          batch_sizes=(2,))]
"""


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (
            ["run", "-m", "perceptron", "--max-time", "inf"],
            "--max-time: expected a number of seconds above 0 and up to 604800",
        ),
        (
            ["run", "-m", "perceptron", "--min-time", "1e400"],
            "--min-time: expected a number of seconds from 0 up to 604800",
        ),
        (["run", "-m", "perceptron", "--warmup-time", "nan"], "--warmup-time: expected"),
        (["run", "-m", "perceptron", "--min-time", "-1"], "--min-time: expected"),
        (["run", "-m", "perceptron", "--timeout", "inf"], "--timeout: expected"),
        (["run", "-m", "perceptron", "--timeout", "1e12"], "--timeout: expected"),
        (
            ["run", "-m", "perceptron", "--repeats", "9" * 30],
            "--repeats: expected one integer from 1 to 1,000, got '999",
        ),
        (
            ["run", "-m", "perceptron", "--threads", "9" * 5000],
            "--threads: expected one integer from 1 to 4,096, got '999",
        ),
        (
            ["run", "-m", "perceptron", "--max-batch-size", "-3"],
            "--max-batch-size: expected one integer from 1 to 2,147,483,648",
        ),
        (
            ["run", "-m", "perceptron", "-b", "1,4294967296"],
            "--batch-sizes/-b: expected comma-separated integers from 1",
        ),
        (
            ["run", "-m", "perceptron", "-d", f"N={2**63}"],
            "dimension N: expected integers from 1 to 2**62",
        ),
        (
            ["run", "-m", "perceptron", "--memory-limit", "9" * 400 + "TB"],
            "--memory-limit: expected a size from",
        ),
        (["run", "-m", "perceptron", "--shard", f"1/{10**9}"], "--shard: expected I/N"),
        (["ab", "-m", "mlp", "--time", "inf"], "--time: expected a number of seconds"),
        (["ab", "-m", "mlp", "--candidate-threads", "0"], "--candidate-threads: expected one"),
        (["bisect", "a", "b", "--pair-time", "1e400"], "--pair-time: expected"),
        (["profile", "-m", "mlp", "--steps", "0"], "--steps: expected one integer"),
        (["compare", "a", "b", "--threshold", "inf"], "--threshold: expected a fraction"),
        (["check", "--timeout", "inf"], "--timeout: expected"),
    ],
)
def test_out_of_range_numbers_exit_2_with_the_allowed_range_and_write_nothing(
    capsys, tmp_path, monkeypatch, argv, complaint
):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, *argv, "--out", "x.jsonl")
    assert code == 2 and out == ""
    assert_one_line_error(err, complaint)
    assert len(err) < 400  # a 5000-digit value is not repeated
    assert list(tmp_path.iterdir()) == []  # no empty results file, no results/ folder


@pytest.mark.parametrize(
    "command",
    [
        ["run", "-m", "perceptron"],
        ["ab", "-m", "mlp"],
        ["profile", "-m", "mlp"],
        ["export", "x.jsonl"],
        ["results", "merge", "a.jsonl"],
    ],
)
def test_out_outside_the_current_folder_needs_its_folder_to_exist(capsys, tmp_path, command):
    missing = tmp_path / "no_such_folder"
    code, _, err = run_cli(capsys, *command, "--out", str(missing / "deeper" / "x"))
    assert code == 2
    assert_one_line_error(err, f"folder {missing} does not exist: create it first")
    assert not missing.exists()


def _write_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Plugin modules on PYTHONPATH, so process-isolated cases import them too."""
    for name in names:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(PLUGIN).format(name=f"{name}_lin"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.delenv("HARNESS_PLUGINS", raising=False)
    monkeypatch.delenv("HARNESS_DISABLE_PLUGINS", raising=False)


def test_comma_separated_plugins_run_into_a_new_folder_under_the_current_one_as_json(
    capsys, tmp_path, monkeypatch
):
    _write_plugins(tmp_path, monkeypatch, "h15_alpha", "h15_beta")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(
        capsys,
        "run",
        "--plugin",
        "h15_alpha,h15_beta",
        "-m",
        "h15_alpha_lin,h15_beta_lin",
        "--json",
        "-q",
        "--out",
        "results/new/run.jsonl",
        *FAST,
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["results"] == "results/new/run.jsonl"
    assert document["summary"] == {
        "cases": 2,
        "ok": 2,
        "failed": 0,
        "skipped": 0,
        "already_recorded": 0,
    }
    cases = {c["model"]: c for c in document["cases"]}
    assert set(cases) == {"h15_alpha_lin", "h15_beta_lin"}
    assert cases["h15_alpha_lin"]["case"].startswith("h15_alpha_lin[")
    assert cases["h15_alpha_lin"]["status"] == "ok"
    assert cases["h15_alpha_lin"]["median_s"] > 0
    header = load(tmp_path / "results/new/run.jsonl").iloc[0]
    assert header["run_id"] == document["run_id"]


def test_resume_loads_the_plugins_the_run_was_made_with(capsys, tmp_path, monkeypatch):
    _write_plugins(tmp_path, monkeypatch, "h15_gamma")
    out = tmp_path / "run.jsonl"
    assert (
        run_cli(
            capsys,
            "run",
            "--plugin",
            "h15_gamma",
            "--disable-plugin",
            "calibration",
            "-m",
            "h15_gamma_lin",
            "-b",
            "1,2",
            "-q",
            "--out",
            str(out),
            *FAST,
        )[0]
        == 0
    )
    lines = out.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["plugins"] == ["h15_gamma"] and header["disabled_plugins"] == ["calibration"]
    out.write_text("\n".join(lines[:-1]) + "\n")  # the run killed before its last case
    code, stdout, err = run_cli(capsys, "run", "--resume", str(out), "-q", "--json")
    assert code == 0, err
    document = json.loads(stdout)
    assert document["summary"]["cases"] == 1 and document["summary"]["already_recorded"] == 1
    assert json.loads(out.read_text().splitlines()[-2])["disabled_plugins"] == ["calibration"]


@pytest.mark.parametrize(
    "plugins, error",
    [
        (["ok", "../evil"], "its run header's 'plugins' is not a list of plugin names"),
        (["ok", {"evil": 1}], "plugins is ['ok', {'evil': 1}], expected a list of strings"),
    ],
)
def test_resume_refuses_a_header_whose_plugins_are_not_names(capsys, tmp_path, plugins, error):
    out = tmp_path / "run.jsonl"
    out.write_text(
        json.dumps(
            {
                "record": "run",
                "schema": 1,
                "run_id": "r1",
                "plugins": plugins,
                "request": {"models": ["mlp"]},
            }
        )
        + "\n"
    )
    code, _, err = run_cli(capsys, "run", "--resume", str(out))
    assert code == 1
    assert_one_line_error(err, error)


@pytest.mark.parametrize("where", ["before", "after"])
def test_plugin_options_go_before_or_after_the_command(capsys, tmp_path, monkeypatch, where):
    _write_plugins(tmp_path, monkeypatch, "h15_delta")
    options = ["--plugin", "h15_delta", "--disable-plugin", "calibration"]
    argv = [*options, "list", "--json"] if where == "before" else ["list", "--json", *options]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    plugins = {row["plugin"] for row in json.loads(out)}
    assert "h15_delta" in plugins and "calibration" not in plugins


def test_plugin_options_before_a_command_that_loads_none_are_refused(capsys):
    code, _, err = run_cli(capsys, "--disable-plugin", "gan", "compare", "a", "b")
    assert code == 2
    assert_one_line_error(err, "harness compare loads no plugins; drop --plugin")


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_import_neither_torch_nor_pandas_nor_rich(flag):
    code = (
        "import sys; from harness.cli import main\n"
        f"try:\n    main([{flag!r}])\nexcept SystemExit as exc:\n    assert exc.code == 0\n"
        "heavy = {'torch', 'pandas', 'rich'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_list_builds_models_without_dynamo_or_pandas():
    """Random initialisers on the meta device import torch._dynamo (3 s here) and the
    tables of other commands import pandas: `list` needs neither (transformers imports
    both, so its plugin is left out)."""
    code = (
        "import sys; from harness.cli import main\n"
        "assert main(['list', '--json', '--disable-plugin', 'huggingface']) == 0\n"
        "heavy = {'torch._dynamo', 'pandas', 'sympy'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert {m["name"]: m["params"] for m in listed}["calibration_matmul"] == 256 * 256


def test_disabling_a_plugin_takes_its_models_out_of_the_suites_that_name_them(capsys):
    code, out, _ = run_cli(capsys, "--disable-plugin", "gan", "list", "--suite", "smoke", "--json")
    names = {m["name"] for m in json.loads(out)}
    assert code == 0 and "mlp" in names and not any(n.startswith("dcgan") for n in names)
    code, _, err = run_cli(capsys, "--disable-plugin", "gan", "run", "--suite", "gan")
    assert code == 2 and err.strip().splitlines() == [
        "harness: error: suite 'gan' has no models loaded: the plugins that provide them are "
        "disabled (--disable-plugin, HARNESS_DISABLE_PLUGINS) or not installed"
    ]


def test_help_describes_the_commands_in_plain_text_with_examples(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    assert "``" not in out and "models," not in out.split("\n\n")[1].splitlines()[-1]
    assert out.split("\n\n")[1].startswith("Benchmark PyTorch models that plugins provide:")
    examples = out.split("examples:\n", 1)[1].split("\n\n")[0].splitlines()
    assert 4 <= len(examples) <= 8 and all(e.startswith("  harness ") for e in examples)


def test_a_subcommand_help_still_lists_its_options(capsys):
    code, out, _ = run_cli(capsys, "run", "--help")
    assert code == 0
    assert "--max-time SECONDS" in out and "--json" in out
    assert "missing folders are created under the current folder" in " ".join(out.split())


def test_profile_json_has_the_tables_and_the_trace(capsys, tmp_path):
    code, out, err = run_cli(
        capsys,
        "profile",
        "-m",
        "mlp",
        "-b",
        "2",
        "--steps",
        "1",
        "--top",
        "3",
        "--json",
        "-q",
        "--out",
        str(tmp_path),
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["model"] == "mlp" and document["batch_size"] == 2
    assert 1 <= len(document["top_self_cpu"]) <= 3
    assert {"name", "calls", "self_time", "total_time"} <= set(document["top_self_cpu"][0])
    assert document["top_self_device"] is None  # a CPU case
    assert Path(document["trace"]).is_file() and document["step_time_s"] > 0
    assert document["view"].startswith("view: ")
