"""One-line registration: ``@harness.register`` beside the constructor, no hook needed."""

from __future__ import annotations

import json
import textwrap

import pytest

from harness.store.results import load
from tests.test_cli import assert_one_line_error, run_cli

DECORATED = """
    import torch
    from torch import nn
    import harness
    from harness import Dim, Input

    @harness.register(
        inputs=[Input("x", "(B, NIN)")],
        outputs=["(B, NOUT)"],
        dims={"NIN": Dim(16, kwarg="nin"), "NOUT": Dim(4, kwarg="nout")},
        family="mlp",
        batch_sizes=(2,),
    )
    def reg_affine(nin: int, nout: int) -> nn.Module:
        return nn.Linear(nin, nout)

    @harness.register(
        "reg_pair", inputs=[Input("x", "(B, 8)")], outputs=["(B, 8)", "(B, 8)"], trainable=False
    )
    class Pair(nn.Module):
        def forward(self, x):
            return x * 2, x + 1
"""


@pytest.fixture
def decorated(tmp_path, monkeypatch):
    name = "reg_plugin_module"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(DECORATED))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_list_check_and_run_see_the_models_a_module_registered_with_the_decorator(
    decorated, capsys, tmp_path
):
    code, out, err = run_cli(capsys, "list", "--plugin", decorated, "--json")
    assert code == 0, err
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["reg_affine"]["plugin"] == rows["reg_pair"]["plugin"] == decorated
    assert rows["reg_affine"]["family"] == "mlp"
    code, out, err = run_cli(capsys, "check", "--plugin", decorated, "-m", "reg_affine,reg_pair")
    assert code == 0, err + out
    results = tmp_path / "r.jsonl"
    quick = ["--max-time", "0.02", "--min-time", "0.01", "--warmup-time", "0.01"]
    code, _, err = run_cli(
        capsys, "run", "--plugin", decorated, "-m", "reg_affine", "--dim", "NOUT=3", *quick,
        "-q", "--out", str(results),
    )  # fmt: skip
    assert code == 0, err
    (case,) = load(results).to_dict("records")
    assert (case["status"], case["batch_size"], case["dims"]) == ("ok", 2, {"NIN": 16, "NOUT": 3})
    assert case["params"] == 16 * 3 + 3  # the constructor got the dimension through its kwarg


def test_a_decorator_without_inputs_and_outputs_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "reg_broken.py").write_text(
        "import harness\n\n@harness.register()\ndef reg_nothing():\n    return None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = run_cli(capsys, "list", "--plugin", "reg_broken")
    assert code == 1
    assert_one_line_error(
        err, "reg_broken", "@harness.register on reg_nothing: give inputs and outputs"
    )


def test_a_registered_name_taken_by_another_plugin_is_refused(decorated, tmp_path, capsys):
    (tmp_path / "reg_again.py").write_text(
        textwrap.dedent("""
        from torch import nn
        import harness
        from harness import Input

        harness.register("reg_affine", inputs=[Input("x", "(B, 2)")], outputs=["(B, 2)"])(
            lambda: nn.Identity()
        )
        """)
    )
    code, _, err = run_cli(capsys, "list", "--plugin", f"{decorated},reg_again")
    assert code == 1
    assert_one_line_error(err, "model 'reg_affine' is registered by both plugin")
