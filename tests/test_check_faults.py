"""``harness check`` and ``harness run`` against models that crash, hang, declare shapes
that do not evaluate or do not match: each is that model's failure, the others go on."""

from __future__ import annotations

import json

import pytest
import torch

from harness.cli import main
from harness.execute import failure, workload
from harness.models.registry import load_registry
from harness.models.shapes import OutputShapeMismatch
from harness.store.results import load
from harness.sweep.plan import Case

HOSTILE = """
    import ctypes, time
    from torch import nn
    import harness
    from harness import Dim, Input, ModelSpec

    class Fault(nn.Module):
        def __init__(self, kind):
            super().__init__()
            self.kind = kind
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            if self.kind == "segfault":
                ctypes.string_at(0)
            if self.kind == "hang":
                time.sleep(60)
            return self.lin(x)

    def spec(kind, inputs="(B, 4)", outputs="(B, 4)"):
        return ModelSpec(name=f"hostile_{kind}", constructor=Fault, kwargs={"kind": kind},
                         inputs=[Input("x", inputs)], outputs=[outputs], dims={"N": Dim(4)},
                         batch_sizes=(1,))

    @harness.hookimpl
    def harness_models():
        return [spec("segfault"), spec("hang"), spec("fine"),
                spec("div0", outputs="(B, 4 // 0)"), spec("wrong", outputs="(B, N + 1)"),
                spec("huge", inputs="(B, 99999999999999999999)"),
                spec("negative", inputs="(B, -N)")]
"""


def _check(capsys, *argv: str) -> tuple[int, dict[str, dict]]:
    code = main(["check", *argv, "--json"])
    return code, {r["name"]: r for r in json.loads(capsys.readouterr().out)}


def test_check_reports_a_segfault_and_a_hang_as_their_models_failures(plugin_module, capsys):
    name = plugin_module(HOSTILE)
    code, rows = _check(
        capsys,
        "-m",
        "hostile_segfault,hostile_hang,hostile_fine",
        "--plugin",
        name,
        "--timeout",
        "5",
    )
    assert code == 1
    assert rows["hostile_segfault"]["problems"] == ["crashed: process killed by SIGSEGV"]
    assert rows["hostile_hang"]["problems"] == [
        "timeout: no result after the 5 s timeout; raise it with --timeout"
    ]
    assert not rows["hostile_segfault"]["ok"] and rows["hostile_segfault"]["expected"] is None
    assert rows["hostile_fine"]["ok"] and rows["hostile_fine"]["observed"] == [[2, 4]]


def test_check_timeout_needs_process_isolation(plugin_module, capsys):
    code = main(["check", "-m", "perceptron", "--isolation", "none", "--timeout", "5"])
    assert code == 2
    assert "--timeout needs --isolation process" in capsys.readouterr().err


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_a_shape_that_does_not_evaluate_fails_its_model_naming_the_expression(
    plugin_module, capsys, isolation
):
    name = plugin_module(HOSTILE)
    code = main(
        [
            "check",
            "-m",
            "hostile_div0,hostile_huge,hostile_negative,hostile_fine",
            "--plugin",
            name,
            "--isolation",
            isolation,
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "hostile_div0: ShapeError: expression '4 // 0': division by zero" in out
    assert (
        "hostile_huge: ShapeError: expression '99999999999999999999': value "
        "99999999999999999999 is beyond 2**62"
    ) in out
    assert "hostile_negative: ShapeError: expression '-N': value -4 is negative" in out
    assert "4 models checked, 3 failed" in out


def test_run_records_a_wrong_output_shape_as_shape_mismatch_and_goes_on(
    plugin_module, tmp_path, capsys
):
    name = plugin_module(HOSTILE)
    out = tmp_path / "run.jsonl"
    code = main(
        [
            "run",
            "-m",
            "hostile_wrong,hostile_fine",
            "-b",
            "1,3",
            "--compile",
            "none,default",
            "--backend",
            "eager",
            "--mode",
            "infer,train",
            "--plugin",
            name,
            "--isolation",
            "none",
            "--max-time",
            "0.01",
            "--warmup-time",
            "0.01",
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 1
    assert "16 cases: 8 ok, 8 failed, 0 skipped" in printed
    frame = load(out)
    wrong = frame[frame["model"] == "hostile_wrong"]
    assert set(wrong["status"]) == {"shape_mismatch"} and len(wrong) == 8
    for batch, error in zip(wrong["batch_size"], wrong["error"]):
        assert error == (
            f"OutputShapeMismatch: output 0 at B={batch}: expected (B, N + 1) = "
            f"({batch}, 5), got ({batch}, 4)"
        )
    assert set(frame[frame["model"] == "hostile_fine"]["status"]) == {"ok"}


def test_the_step_other_timers_use_refuses_a_wrong_output_shape(plugin_module):
    spec = load_registry([plugin_module(HOSTILE)]).model("hostile_wrong").spec
    case = Case(model="hostile_wrong", batch_size=2, dims={"N": 4})
    with pytest.raises(OutputShapeMismatch, match=r"expected \(B, N \+ 1\) = \(2, 5\)"):
        with workload.prepared(spec, case):
            pass
    assert failure.failure_status(OutputShapeMismatch("x")) == "shape_mismatch"
    assert failure.failure_status(torch.OutOfMemoryError("x")) == "oom"
