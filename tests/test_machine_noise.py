"""Two single-process runs judged with their machine noise (heartbeats): the noise
estimate, false alarms of identical runs, power against a doubled workload, runs
without heartbeats, and heartbeats as a real run records them."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from harness.analysis import compare, significance
from harness.analysis.noise import DRIFT_EXPONENT, MachineNoise, machine_noise, machine_shift
from harness.cli import main
from harness.store.record import CaseRecord
from harness.store.results import iter_records, load
from tests.test_compare import _beats, _lognormal, _record, _run, _write


def _frame(
    beats: list[tuple[float, float]], run_id: str = "r", device: str = "cpu", status: str = "ok"
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": run_id,
            "status": status,
            "device": device,
            "threads": 1,
            "heartbeat.before": [b for b, _ in beats],
            "heartbeat.after": [a for _, a in beats],
        }
    )


def _lognormal_beats(rng, count: int, sd: float, level: float = 1e-5):
    return [tuple(level * rng.lognormal(0, sd, 2)) for _ in range(count)]


def test_machine_noise_is_the_robust_sd_of_a_runs_log_heartbeats():
    rng = np.random.default_rng(20)
    beats = _lognormal_beats(rng, 400, 0.05)
    (noise,) = machine_noise(_frame(beats)).values()
    assert noise.count == 800 and noise.sd == pytest.approx(0.05, rel=0.1)
    # robust: ten heartbeats caught in a 10x stall hardly move it
    stalled = [(10 * b, a) for b, a in beats[:10]] + beats[10:]
    assert machine_noise(_frame(stalled))["r"].sd == pytest.approx(noise.sd, rel=0.05)


def test_machine_noise_is_per_run_and_centres_each_device_on_its_own_level():
    rng = np.random.default_rng(21)
    frame = pd.concat(
        [
            _frame(_lognormal_beats(rng, 200, 0.05), "quiet"),
            _frame(_lognormal_beats(rng, 200, 0.05, 1e-7), "quiet", "cuda"),
            _frame(_lognormal_beats(rng, 200, 0.2), "busy"),
            _frame([(1.0, 1.0)] * 50, "busy", status="error"),
        ]
    )
    noise = machine_noise(frame)
    assert noise["quiet"].count == 800 and noise["quiet"].sd == pytest.approx(0.05, rel=0.15)
    assert noise["busy"].count == 400 and noise["busy"].sd == pytest.approx(0.2, rel=0.15)


def test_too_few_heartbeats_or_none_leave_the_noise_unknown():
    few = machine_noise(_frame([(1e-5, 1.1e-5), (1e-5, 0.9e-5)]))["r"]
    assert (few.sd, few.count) == (None, 4)
    none = machine_noise(_frame([(None, None)] * 5))["r"]
    assert (none.sd, none.count) == (None, 0)
    assert "no heartbeats" in none.why_unknown("baseline")
    assert "4 heartbeats, fewer than 6" in few.why_unknown("candidate")


def test_a_case_whose_own_heartbeats_were_disturbed_gets_their_spread(tmp_path):
    rng = np.random.default_rng(28)
    ratios = {f"m{i}": 1.0 for i in range(10)}
    base = load(_write(tmp_path / "b.jsonl", _run(rng, ratios)))
    verdicts = []
    for after in (1.0, 3.0):  # the candidate's m0 80 % slow; its heartbeat after it too?
        records = _run(rng, ratios)
        records[0]["latency"]["samples"] = [1.8 * s for s in records[0]["latency"]["samples"]]
        records[0]["heartbeat"]["after"] *= after
        cand = load(_write(tmp_path / f"c{after}.jsonl", records))
        (run,) = machine_noise(cand).values()
        rows = cand.to_dict("records")
        assert run.of_case(rows[1:2]).sd == pytest.approx(run.sd, abs=0.02)
        verdicts.append(compare.compare(base, cand).set_index("model").loc["m0", "verdict"])
    assert run.of_case(rows[:1]).sd == pytest.approx(math.log(3.0) / math.sqrt(2), rel=0.1)
    assert verdicts == ["slower", "inconclusive"]


def test_a_case_sampled_longer_than_the_heartbeat_sees_less_of_its_wander(tmp_path):
    rng = np.random.default_rng(29)
    records = _run(rng, {f"m{i}": 1.0 for i in range(10)}, sd=0.1)
    for record in records[:5]:  # ten times the samples: ten times the heartbeat's window
        record["latency"]["samples"] *= 10
    (run,) = machine_noise(load(_write(tmp_path / "r.jsonl", records))).values()
    rows = load(tmp_path / "r.jsonl").to_dict("records")
    short, long = (
        run.of_case([r]).sd / max(run.sd, _rms_deviation(run, r)) for r in (rows[9], rows[0])
    )
    assert short == pytest.approx(1.0, abs=0.01)
    assert long == pytest.approx(10**-DRIFT_EXPONENT, rel=0.01)


def _rms_deviation(run: MachineNoise, row: dict) -> float:
    logs = [math.log(row[f"heartbeat.{k}"]) for k in ("before", "after")]
    return math.sqrt(np.mean([(x - run.centre([row])) ** 2 for x in logs]))


def test_a_shift_of_the_whole_machine_between_runs_widens_every_case(tmp_path):
    rng = np.random.default_rng(30)
    ratios = {f"m{i}": 1.0 for i in range(10)}
    base = load(_write(tmp_path / "b.jsonl", _run(rng, ratios, sd=0.01)))
    slow = _run(rng, ratios, sd=0.01)  # the machine 60 % slower all through this run
    for record in slow:
        record["latency"]["samples"] = [1.6 * s for s in record["latency"]["samples"]]
        record["heartbeat"] = {
            **record["heartbeat"],
            **{k: 1.6 * record["heartbeat"][k] for k in ("before", "after")},
        }
    cand = load(_write(tmp_path / "c.jsonl", slow))
    rows = [[r] for r in (base.iloc[0].to_dict(), cand.iloc[0].to_dict())]
    noise = {**machine_noise(base), **machine_noise(cand)}
    assert machine_shift(*rows, noise) == pytest.approx(math.log(1.6), abs=0.02)
    assert (compare.compare(base, cand)["verdict"] == "inconclusive").all()
    # on another machine the shift is what the comparison measures
    other = load(_write(tmp_path / "o.jsonl", slow, host="box-b"))
    assert machine_shift(rows[0], [other.iloc[0].to_dict()], noise) == 0
    assert (compare.compare(base, other)["verdict"] == "slower").all()


def _identical_runs(rng, cases: int, sd: float, ratio: float = 1.0, run_sd: float = 0.0):
    """Two single-process runs of ``cases`` cases, each case shifted by the machine as much
    as the heartbeats wander (``sd``), and each run, heartbeats and cases, by a shift of
    the whole machine (sd ``run_sd``); the candidate's cases ``ratio`` times slower."""
    sides = []
    for r in (1.0, ratio):
        level = rng.lognormal(0, run_sd) if run_sd else 1.0
        beats = _lognormal_beats(rng, cases, sd, 1e-5 * level)
        samples = [
            [list(_lognormal(rng, r * level * rng.lognormal(0, sd), 30))] for _ in range(cases)
        ]
        sides.append((samples, machine_noise(_frame(beats))["r"]))
    (xs, base), (ys, cand) = sides
    shift = cand.centres[("cpu", 1, None)] - base.centres[("cpu", 1, None)]
    return [significance.shift_of_runs(x, y, base, cand, shift) for x, y in zip(xs, ys)]


@pytest.mark.parametrize(
    "cases, sd, run_sd", [(3, 0.08, 0), (10, 0.08, 0), (10, 0.02, 0), (10, 0.05, 0.15)]
)
def test_identical_single_process_runs_false_alarm_at_most_alpha(cases, sd, run_sd):
    rng = np.random.default_rng(22)
    estimates = [
        e for _ in range(1200 // cases) for e in _identical_runs(rng, cases, sd, run_sd=run_sd)
    ]
    alarms = np.mean([e.p_value <= significance.ALPHA for e in estimates])
    assert alarms <= significance.ALPHA + 0.01
    # the samples alone, blind to the machine's shifts, would cry wolf most of the time
    assert np.mean([e.within.p_value <= significance.ALPHA for e in estimates]) > 0.5


def test_a_doubled_workload_is_still_slower_on_a_noisy_machine():
    rng = np.random.default_rng(23)
    estimates = [e for _ in range(50) for e in _identical_runs(rng, 10, 0.1, ratio=2.0)]
    verdicts = [significance.judge(e, compare.DEFAULT_THRESHOLD, True) for e in estimates]
    assert verdicts.count("slower") >= 0.95 * len(verdicts)
    assert np.median([e.ratio for e in estimates]) == pytest.approx(2.0, rel=0.03)


def test_compare_holds_back_what_only_the_samples_call_a_change(tmp_path, capsys):
    rng = np.random.default_rng(24)
    ratios = {f"m{i}": 1.0 for i in range(10)}
    base = _write(tmp_path / "b.jsonl", _run(rng, ratios, sd=0.08))
    cand = _write(tmp_path / "c.jsonl", _run(rng, {**ratios, "m0": 2.0}, sd=0.08))
    table = compare.compare(load(base), load(cand)).set_index("model")
    assert list(table.index[table["verdict"] == "slower"]) == ["m0"]
    assert (table["verdict"] != "faster").all()
    held = table.drop("m0")
    assert (held["samples_verdict"].isin(["slower", "faster"])).sum() >= 3
    assert held["baseline_noise"].iloc[0] == pytest.approx(0.08, rel=0.5)
    assert main(["compare", str(base), str(cand)]) == 0
    out = capsys.readouterr().out
    assert "machine noise: baseline" in out and "slower/faster verdicts of their samples" in out


def test_runs_without_heartbeats_are_inconclusive_and_say_what_would_judge_them(tmp_path, capsys):
    rng = np.random.default_rng(25)
    old = _write(tmp_path / "old.jsonl", [_record(m, _lognormal(rng, 1.0)) for m in "abc"])
    new = _write(tmp_path / "new.jsonl", _run(rng, {"a": 2.0, "b": 1.0, "c": 1.0}))
    assert main(["compare", str(old), str(new), "--json", "--fail-on-regression"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {c["verdict"] for c in report["cases"]} == {"inconclusive"}
    (case,) = [c for c in report["cases"] if c["model"] == "a"]
    assert case["ratio"] == pytest.approx(2.0, rel=0.05)  # the medians' ratio
    assert case["ci_low"] is None and case["p_value"] is None and case["baseline_noise"] is None
    assert "baseline run recorded no heartbeats" in case["note"]
    assert "--repeats 5" in case["note"] and "harness ab" in case["note"]
    assert main(["compare", str(old), str(new)]) == 0
    assert "3 cases inconclusive: machine noise unknown" in capsys.readouterr().out


def test_repeats_are_judged_by_processes_without_heartbeats(tmp_path):
    rng = np.random.default_rng(26)
    base = [_record("m", _lognormal(rng, 1.0), repeat=i) for i in range(significance.MIN_REPEATS)]
    cand = [_record("m", _lognormal(rng, 2.0), repeat=i) for i in range(significance.MIN_REPEATS)]
    row = compare.compare(
        load(_write(tmp_path / "b.jsonl", base)), load(_write(tmp_path / "c.jsonl", cand))
    ).iloc[0]
    assert row["verdict"] == "slower" and row["note"] is None and row["samples_verdict"] is None


def test_a_time_without_samples_is_inconclusive_while_memory_is_judged_on_its_value(tmp_path):
    rng = np.random.default_rng(27)
    runs = []
    for name, factor in (("b", 1.0), ("c", 2.0)):
        record = {
            **_record("m", [1e-3 * factor] * 2, **_beats(rng, 0.01)),
            "memory": {"cpu_peak_rss_bytes": int(1000 * factor)},
        }
        record["latency"] = {"unit": "s", "median": 1e-3 * factor}  # a median alone
        runs.append(load(_write(tmp_path / f"{name}.jsonl", [record])))
    assert compare.compare(*runs).iloc[0]["verdict"] == "inconclusive"
    assert compare.compare(*runs, metric="memory").iloc[0]["verdict"] == "larger"


def test_a_run_records_heartbeats_and_prints_its_machine_noise(tmp_path, capsys):
    out = tmp_path / "beats.jsonl"
    assert (
        main(
            [
                "run",
                "-m",
                "perceptron,softmax_classifier,mlp",
                "-b",
                "1",
                "--max-time",
                "0.02",
                "--warmup-time",
                "0.01",
                "--isolation",
                "process",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    cases = [r for r in iter_records(out) if isinstance(r, CaseRecord)]
    assert len(cases) == 3
    for case in cases:
        beat = case.heartbeat
        assert beat["unit"] == "s"
        assert all(0 < beat[k] < 1 and math.isfinite(beat[k]) for k in ("before", "after"))
    noise = machine_noise(load(out))[cases[0].run_id]
    assert noise.count == 6 and noise.sd is not None and noise.sd >= 0
    assert f"machine noise: {noise.sd:.1%} (sd of 6 heartbeats)" in capsys.readouterr().out
