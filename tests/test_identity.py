"""One case identity: the key of a case and of its record agree, and every command that
names a case (run, compare, history, report, export, the pytest plugin) names it alike."""

from __future__ import annotations

import html
import json
from dataclasses import replace
from pathlib import Path

import pytest

from harness.cli import main
from harness.store.record import CaseRecord
from harness.sweep.plan import Case

pytest_plugins = ["pytester"]


def test_the_label_names_every_option_that_is_not_the_default():
    case = Case(
        "mlp",
        8,
        {"NIN": 100, "A": 1},
        device="cuda",
        dtype="bfloat16",
        precision="amp",
        compile_mode="default",
        backend="aot_eager",
        mode="train",
        repeat=1,
    )
    assert case.label == "mlp[B=8,A=1,NIN=100,cuda,bfloat16,train,amp,compile=default/aot_eager]#2"
    assert Case("mlp", None, {"NIN": 100}).label == "mlp[B=auto,NIN=100]"


def test_amp_and_cast_at_one_dtype_are_two_cases_with_two_labels():
    amp, cast = (Case("mlp", 8, {}, dtype="bfloat16", precision=p) for p in ("amp", "cast"))
    assert amp.key() != cast.key() and amp.label != cast.label


def test_an_eager_case_has_no_backend_whatever_was_asked():
    assert Case("m", 1, backend="aot_eager").key() == Case("m", 1).key()
    assert Case("m", 1, compile_mode="default").key().backend == "inductor"


def test_a_record_has_the_key_of_its_case_and_a_searched_one_its_measured_batch():
    case = Case(
        "mlp",
        8,
        {"NIN": 100},
        dtype="float16",
        precision="amp",
        compile_mode="max-autotune",
        mode="train",
        repeat=2,
    )
    record = CaseRecord.of_case(case)
    assert record.key() == case.key() and record.run_key() == case.run_key()
    assert record.label == case.label
    searched = replace(
        CaseRecord.of_case(Case("mlp", None, {"NIN": 100})),
        batch_size=64,
        batch_search={"max_batch_size": 64},
    )
    assert searched.key().batch_size is None
    assert searched.key(measured=True).label == searched.label == "mlp[B=64,NIN=100]"


def test_linked_cases_share_their_sequence_key_and_not_their_own():
    small, large = Case("m", 1, compile_mode="default"), Case("m", 64)
    assert small.key().sequence() == large.key().sequence()
    assert small.key() != large.key() and small.key().eager() == Case("m", 1).key()


@pytest.mark.slow
def test_run_compare_history_report_export_and_pytest_name_a_case_alike(tmp_path, capsys, pytester):
    expected = "perceptron[B=2,NIN=100,bfloat16]"
    select = ["-m", "perceptron", "-b", "2", "--dtype", "bfloat16"]
    files = [tmp_path / f"{name}.jsonl" for name in ("a", "b")]
    named = {}
    for path in files:
        assert (
            main(
                [
                    "run",
                    *select,
                    "--max-time",
                    "0.02",
                    "--warmup-time",
                    "0.01",
                    "--isolation",
                    "none",
                    "--out",
                    str(path),
                    "--json",
                ]
            )
            == 0
        )
        (case,) = json.loads(capsys.readouterr().out)["cases"]
        named["run"] = case["case"]
    assert main(["compare", *map(str, files), "--json"]) in (0, 1)
    named["compare"] = json.loads(capsys.readouterr().out)["cases"][0]["case"]
    main(["history", *map(str, files), "--json"])
    named["history"] = json.loads(capsys.readouterr().out)["cases"][0]["case"]
    assert main(["export", str(files[0]), "--out", str(tmp_path / "bench.json")]) == 0
    (benchmark,) = json.loads((tmp_path / "bench.json").read_text())["benchmarks"]
    named["export"] = benchmark["extra_info"]["harness_case"]
    assert main(["report", *map(str, files), "-o", str(tmp_path / "report.html")]) == 0
    page = html.unescape(Path(tmp_path / "report.html").read_text())
    named["report"] = expected if expected in page else "(absent)"

    pytester.makepyfile(
        test_models="""
        def test_model(benchmark, harness_case):
            benchmark(harness_case.step)
    """
    )
    ran = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--benchmark-only",
        "--benchmark-max-time=0.02",
        "--benchmark-min-rounds=5",
        "--harness-model",
        "perceptron",
        "--harness-batch-sizes",
        "2",
        "--harness-dtypes",
        "bfloat16",
        "--benchmark-json=out.json",
    )
    ran.assert_outcomes(passed=1)
    (benchmark,) = json.loads((pytester.path / "out.json").read_text())["benchmarks"]
    named["pytest"] = benchmark["extra_info"]["harness_case"]
    assert named == dict.fromkeys(
        ("run", "compare", "history", "export", "report", "pytest"), expected
    )


def test_json_outputs_describe_a_case_by_its_label_and_every_field():
    key = Case("mlp", 8, {"NIN": 100}, dtype="bfloat16", compile_mode="default").key()
    assert json.loads(json.dumps(key.describe())) == {
        "case": "mlp[B=8,NIN=100,bfloat16,compile=default]",
        "model": "mlp",
        "batch_size": 8,
        "dims": {"NIN": 100},
        "device": "cpu",
        "dtype": "bfloat16",
        "precision": "cast",
        "compile_mode": "default",
        "backend": "inductor",
        "mode": "infer",
    }
