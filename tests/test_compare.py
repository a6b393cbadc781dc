"""`harness compare` and `harness results`: statistics on synthetic samples, verdicts, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from harness.analysis import compare, significance
from harness.cli import main
from harness.measure.stats import HEARTBEAT_BLOCKS, HEARTBEAT_PRODUCTS
from harness.store.record import CaseRecord, RunHeader
from harness.store.results import ResultsWriter, iter_records, list_runs, load


def _record(model: str, samples, batch: int = 4, **extra) -> dict:
    median = float(np.median(samples))
    return {
        "model": model,
        "suite": "synthetic",
        "batch_size": batch,
        "device": "cpu",
        "dtype": "float32",
        "precision": "cast",
        "compile_mode": "none",
        "backend": None,
        "mode": "infer",
        "dims": {"N": 8},
        "status": "ok",
        "error": None,
        "latency": {
            "unit": "s",
            "median": median,
            "samples": [float(s) for s in samples],
            "block_size": 1,
        },
        "throughput": batch / median,
        "memory": {"cpu_peak_rss_bytes": 1000},
        "flops": {"utilisation": 0.5},
        **extra,
    }


def _write(path: Path, records, host: str = "box-a") -> Path:
    env = {"hostname": host, "cpu_model": f"cpu of {host}", "gpus": [], "time": "2026-11-23"}
    with ResultsWriter(path, RunHeader(command=("test",), environment=env)) as writer:
        for record in records:
            writer.write_case(CaseRecord(**record))
    return path


def _lognormal(rng, ratio: float, n: int = 40, sigma: float = 0.03):
    return rng.lognormal(math.log(1e-3 * ratio), sigma, n)


# per product: the heartbeat's window as long as a case's 40 samples of 1 ms, so what the
# heartbeats show applies to a case's median unscaled (DRIFT_EXPONENT)
BEAT = 40e-3 / (HEARTBEAT_PRODUCTS * HEARTBEAT_BLOCKS)


def _beats(rng, sd: float) -> dict:
    """A case's heartbeats on a machine whose speed wanders by ``sd`` (of log time)."""
    before, after = BEAT * rng.lognormal(0, sd, 2)
    return {"heartbeat": {"unit": "s", "before": float(before), "after": float(after)}}


def _run(rng, ratios: dict[str, float], sd: float = 0.01) -> list[dict]:
    """A run of one process per case: each model ``ratio`` times 1 ms, landing off that by
    a shift of the machine's, whose size (``sd``) its heartbeats show."""
    return [
        _record(model, _lognormal(rng, ratio * rng.lognormal(0, sd)), **_beats(rng, sd))
        for model, ratio in ratios.items()
    ]


def test_ratio_interval_covers_the_true_ratio_in_at_least_93_percent_of_1000_draws():
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(1000):
        est = significance.shift(_lognormal(rng, 1.0, 30, 0.05), _lognormal(rng, 1.07, 25, 0.05))
        covered += est.ci_low <= 1.07 <= est.ci_high
    assert covered >= 930


def test_p_values_of_identical_distributions_fall_below_5_percent_about_5_percent_of_the_time():
    rng = np.random.default_rng(2)
    alarms = sum(
        significance.shift(_lognormal(rng, 1.0), _lognormal(rng, 1.0)).p_value <= 0.05
        for _ in range(1000)
    )
    assert 20 <= alarms <= 80


def test_hodges_lehmann_ratio_of_a_pure_scaling_is_the_scale():
    base = [1.0, 1.1, 1.3, 0.9, 1.05, 1.2]
    est = significance.shift(base, [1.1 * s for s in base])
    assert est.ratio == pytest.approx(1.1)
    assert est.ci_low <= 1.1 <= est.ci_high


def test_mde_shrinks_as_samples_grow():
    rng = np.random.default_rng(3)
    small = significance.shift(_lognormal(rng, 1, 10), _lognormal(rng, 1, 10)).mde
    large = significance.shift(_lognormal(rng, 1, 400), _lognormal(rng, 1, 400)).mde
    assert large < small / 3
    # 3 % noise, 400 samples each: detectable change about 2.8 * 0.03 * sqrt(2/400) * 1.25
    assert 0.003 < large < 0.012


def test_benjamini_hochberg_matches_the_textbook_example():
    p = [0.01, 0.04, 0.03, 0.5]
    assert significance.benjamini_hochberg(p) == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.5])


@pytest.mark.parametrize(
    "ratio, ci, significant, worse_above, expected",
    [
        (1.10, (1.08, 1.12), True, True, "slower"),
        (0.90, (0.88, 0.92), True, True, "faster"),
        (1.10, (1.08, 1.12), True, False, "faster"),  # throughput went up
        (1.02, (1.01, 1.03), True, True, "no change"),  # real but under the threshold
        (1.00, (0.90, 1.10), False, True, "inconclusive"),  # cannot rule out 5 %
        (1.06, (0.99, 1.13), False, True, "inconclusive"),
    ],
)
def test_verdicts(ratio, ci, significant, worse_above, expected):
    assert significance.verdict(ratio, ci, significant, 0.05, worse_above) == expected


FILLERS = {"f1": 1.0, "f2": 1.0}  # unchanged cases whose heartbeats make the noise known


def test_compare_finds_the_slowed_case_and_only_it(tmp_path):
    rng = np.random.default_rng(4)
    base = _write(tmp_path / "base.jsonl", _run(rng, {f"m{i}": 1.0 for i in range(20)}))
    cand = _write(
        tmp_path / "cand.jsonl", _run(rng, {f"m{i}": 1.6 if i == 7 else 1.0 for i in range(20)})
    )
    table = compare.compare(load(base), load(cand))
    assert list(table.loc[table["regressed"], "model"]) == ["m7"]
    assert table.set_index("model").loc["m7", "ratio"] == pytest.approx(1.6, rel=0.03)


def test_throughput_metric_calls_a_drop_in_throughput_slower(tmp_path):
    rng = np.random.default_rng(5)
    base = _write(tmp_path / "b.jsonl", _run(rng, {"m": 1.0, **FILLERS}))
    cand = _write(tmp_path / "c.jsonl", _run(rng, {"m": 1.6, **FILLERS}))
    row = compare.compare(load(base), load(cand), metric="throughput").iloc[0]
    assert row["verdict"] == "slower"
    assert row["ratio"] == pytest.approx(1 / 1.6, rel=0.03)


def test_cli_exit_status_gates_on_regression_only_when_asked(tmp_path, capsys):
    rng = np.random.default_rng(6)
    base = _write(tmp_path / "b.jsonl", _run(rng, {"m": 1.0, **FILLERS}))
    cand = _write(tmp_path / "c.jsonl", _run(rng, {"m": 1.6, **FILLERS}))
    assert main(["compare", str(base), str(cand)]) == 0
    out = capsys.readouterr().out
    assert "slower" in out and "3 cases: 1 slower" in out
    assert main(["compare", str(base), str(cand), "--fail-on-regression"]) == 1
    assert (
        main(["compare", str(base), str(cand), "--threshold", "80%", "--fail-on-regression"]) == 0
    )


def test_cli_json_lists_cases_summary_and_cases_only_on_one_side(tmp_path, capsys):
    rng = np.random.default_rng(7)
    base = _write(
        tmp_path / "b.jsonl",
        [_record("m", _lognormal(rng, 1.0)), _record("gone", _lognormal(rng, 1.0))],
    )
    cand = _write(tmp_path / "c.jsonl", [_record("m", _lognormal(rng, 1.0))])
    assert main(["compare", str(base), str(cand), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["only_in"] == {"baseline": 1, "candidate": 0}
    assert [c["model"] for c in report["cases"]] == ["m"]
    assert sum(report["summary"].values()) == 1


def test_runs_from_two_machines_show_geomean_speedups_and_utilisation(tmp_path, capsys):
    rng = np.random.default_rng(8)
    base = _write(
        tmp_path / "b.jsonl",
        [_record("m", _lognormal(rng, 1.0)), _record("n", _lognormal(rng, 1.0))],
        host="old",
    )
    cand = _write(
        tmp_path / "c.jsonl",
        [_record("m", _lognormal(rng, 0.5)), _record("n", _lognormal(rng, 0.5))],
        host="new",
    )
    assert main(["compare", str(base), str(cand)]) == 0
    out = capsys.readouterr().out
    assert "geometric-mean speedup" in out and "util base" in out
    table = compare.compare(load(base), load(cand))
    (group,) = compare.geomean_speedups(table).to_dict("records")
    assert group["geomean_speedup"] == pytest.approx(2.0, rel=0.03) and group["cases"] == 2


def test_geomean_of_reciprocal_speedups_is_one():
    import pandas as pd

    table = pd.DataFrame(
        {
            "ratio": [0.5, 2.0],
            "suite": ["s", "s"],
            "dtype": ["float32"] * 2,
            "compile_mode": ["none"] * 2,
        }
    )
    assert compare.geomean_speedups(table)["geomean_speedup"].iloc[0] == pytest.approx(1.0)


def test_memory_metric_uses_the_threshold_on_single_values(tmp_path):
    rng = np.random.default_rng(9)
    base = _write(tmp_path / "b.jsonl", [_record("m", _lognormal(rng, 1.0))])
    fat = _record("m", _lognormal(rng, 1.0), memory={"cpu_peak_rss_bytes": 1200})
    cand = _write(tmp_path / "c.jsonl", [fat])
    row = compare.compare(load(base), load(cand), metric="memory").iloc[0]
    assert row["ratio"] == pytest.approx(1.2) and row["verdict"] == "larger" and row["regressed"]


def test_a_run_id_prefix_picks_one_run_of_a_file(tmp_path, capsys):
    rng = np.random.default_rng(10)
    path = tmp_path / "two.jsonl"
    _write(path, _run(rng, {"m": 1.0, **FILLERS}))
    _write(path, _run(rng, {"m": 1.6, **FILLERS}))
    first, second = [r.run_id for r in iter_records(path) if isinstance(r, RunHeader)]
    assert main(["compare", f"{path}#{first[:6]}", f"{path}#{second}", "--fail-on-regression"]) == 1
    assert main(["compare", f"{path}#zzz", str(path)]) == 1
    assert "no run in" in capsys.readouterr().err


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda d: (
                _write(d / "a.jsonl", [_record("a", [1e-3, 2e-3])]),
                _write(d / "b.jsonl", [_record("b", [1e-3, 2e-3])]),
            ),
            "no cases in common",
        ),
        (
            lambda d: (_write(d / "a.jsonl", [_record("a", [1e-3, 2e-3])]), d / "missing.jsonl"),
            "does not exist",
        ),
        (
            lambda d: (
                _write(d / "a.jsonl", [_record("a", [1e-3, 2e-3])]),
                _text(d / "notes.jsonl", "just some notes\n"),
            ),
            "not a harness results file",
        ),
        (
            lambda d: (
                _write(d / "a.jsonl", [_record("a", [1e-3, 2e-3])]),
                _old_schema(d / "old.jsonl"),
            ),
            "results schema 0 is not one this harness reads",
        ),
    ],
)
def test_bad_inputs_are_one_line_errors(tmp_path, capsys, make, message):
    base, cand = make(tmp_path)
    assert main(["compare", str(base), str(cand)]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def _text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _old_schema(path: Path) -> Path:
    _write(path, [_record("a", [1e-3, 2e-3])])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({**r, "schema": 0}) + "\n" for r in lines))
    return path


def test_results_lists_each_run_once_with_its_case_counts(tmp_path, capsys):
    path = tmp_path / "runs.jsonl"
    _write(path, [_record("m", [1e-3, 2e-3]), {**_record("n", [1e-3]), "status": "error"}])
    _write(path, [_record("m", [1e-3, 2e-3])], host="other")
    runs = list_runs(tmp_path)
    assert [r["cases"] for r in runs] == [2, 1]
    assert runs[0]["statuses"] == {"ok": 1, "error": 1}
    assert main(["results", str(tmp_path)]) == 0
    assert "2 runs" in capsys.readouterr().out


def test_target_mde_sets_the_matching_target_precision(tmp_path, capsys):
    out = tmp_path / "mde.jsonl"
    assert (
        main(
            [
                "run",
                "-m",
                "perceptron",
                "-b",
                "1",
                "--target-mde",
                "3%",
                "--max-time",
                "0.05",
                "--isolation",
                "none",
                "-q",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    (header,) = [r for r in iter_records(out) if isinstance(r, RunHeader)]
    assert header.settings["target_precision"] == pytest.approx(
        0.03 / significance.MDE_PER_PRECISION
    )
    assert main(["run", "-m", "perceptron", "--target-mde", "3%", "--target-precision", "1%"]) == 2
    assert "not both" in capsys.readouterr().err


def _processes(rng, ratio: float, count: int, slow: int = 0) -> list[list[float]]:
    """``count`` processes' samples; the first ``slow`` of them landed 25 % slow as a whole."""
    return [
        list(_lognormal(rng, ratio * (1.25 if i < slow else 1.0), 30, 0.01)) for i in range(count)
    ]


def test_bootstrap_over_processes_covers_the_true_ratio_and_rarely_false_alarms():
    rng = np.random.default_rng(11)
    covered = alarms = 0
    for _ in range(400):
        base = [[s * rng.lognormal(0, 0.01) for s in p] for p in _processes(rng, 1.0, 8)]
        cand = [[s * rng.lognormal(0, 0.01) for s in p] for p in _processes(rng, 1.05, 8)]
        same = [[s * rng.lognormal(0, 0.01) for s in p] for p in _processes(rng, 1.0, 8)]
        est = significance.shift_of_repeats(base, cand)
        covered += est.ci_low <= 1.05 <= est.ci_high
        alarms += significance.shift_of_repeats(base, same).p_value <= 0.05
    assert covered >= 0.9 * 400 and alarms <= 0.08 * 400


def _repeat_records(model: str, processes: list[list[float]]) -> list[dict]:
    return [_record(model, samples, repeat=i) for i, samples in enumerate(processes)]


def test_with_repeats_a_whole_slow_process_is_outvoted_not_called_a_regression(tmp_path):
    rng = np.random.default_rng(12)
    base = _write(tmp_path / "b.jsonl", _repeat_records("m", _processes(rng, 1.0, 8)))
    cand = _write(tmp_path / "c.jsonl", _repeat_records("m", _processes(rng, 1.0, 8, slow=2)))
    row = compare.compare(load(base), load(cand), threshold=0.03).iloc[0]
    assert row["repeats"] == (8, 8)
    assert row["verdict"] != "slower" and row["ratio"] < 1.02
    assert row["p_value"] > 0.05
    # pooled, the slow processes' samples make a "significant" change out of nothing
    pooled = significance.shift(
        [s for p in _processes(rng, 1.0, 8) for s in p],
        [s for p in _processes(rng, 1.0, 8, slow=2) for s in p],
    )
    assert pooled.p_value < 1e-3 and pooled.ci_low > 1


def test_with_repeats_a_true_five_percent_slowdown_is_found_despite_a_slow_baseline_process(
    tmp_path,
):
    rng = np.random.default_rng(13)
    base = _write(tmp_path / "b.jsonl", _repeat_records("m", _processes(rng, 1.0, 8, slow=1)))
    cand = _write(tmp_path / "c.jsonl", _repeat_records("m", _processes(rng, 1.05, 8)))
    row = compare.compare(load(base), load(cand), threshold=0.03).iloc[0]
    assert row["verdict"] == "slower"
    assert row["ratio"] == pytest.approx(1.05, rel=0.01)


def test_repeats_run_round_robin_in_fresh_processes_and_compare_as_one_case(tmp_path, capsys):
    out = tmp_path / "repeats.jsonl"
    assert (
        main(
            [
                "run",
                "-m",
                "perceptron,softmax_classifier",
                "-b",
                "1",
                "--repeats",
                "3",
                "--max-time",
                "0.02",
                "--warmup-time",
                "0.01",
                "-q",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    cases = [r for r in iter_records(out) if isinstance(r, CaseRecord)]
    assert [(r.model, r.repeat) for r in cases] == [
        (m, i) for i in range(3) for m in ("perceptron", "softmax_classifier")
    ]
    capsys.readouterr()
    assert main(["compare", str(out), str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["cases"]) == 2 and report["cases"][0]["repeats"] == [3, 3]
