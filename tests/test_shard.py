"""Sharding a sweep across CI jobs and merging the shards back into one run."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.store.record import CaseRecord, RunHeader
from harness.store.results import iter_records
from harness.sweep.plan import Request, build_plan, shard_cases

BASE = ["--warmup-time", "0.01", "--isolation", "none", "-q"]
QUICK = ["--max-time", "0.01", *BASE]


def _plan(registry, **kw):
    return build_plan(registry, Request(suite="smoke", **kw)).cases


def test_shards_partition_the_sweep_evenly_and_deterministically(registry):
    cases = _plan(registry, batch_sizes=(1, 2), compile_modes=("none", "default"))
    shards = [shard_cases(cases, i, 4) for i in range(1, 5)]
    assert sorted(c.key() for s in shards for c in s) == sorted(c.key() for c in cases)
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 4  # one configuration's batch x compile group
    assert shards == [shard_cases(cases, i, 4) for i in range(1, 5)]


def test_a_configurations_batches_and_compile_modes_share_a_shard(registry):
    cases = _plan(registry, batch_sizes=(1, 2), compile_modes=("none", "default"))
    for index in (1, 2, 3):
        for case in shard_cases(cases, index, 3):
            twins = [c for c in cases if c.model == case.model and c.dims == case.dims]
            assert all(t in shard_cases(cases, index, 3) for t in twins)


def test_a_shard_outside_its_count_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "-m", "perceptron", "--shard", "3/2"])
    assert exit_info.value.code == 2
    assert "expected I/N with 1 <= I <= N" in capsys.readouterr().err


def _cases(path):
    return sorted((r.model, r.batch_size) for r in iter_records(path) if isinstance(r, CaseRecord))


def test_merged_shards_hold_exactly_the_cases_of_one_unsharded_run(tmp_path, capsys):
    selection = ["-m", "perceptron,softmax_classifier,mlp", "-b", "1,2"]
    whole = tmp_path / "whole.jsonl"
    assert main(["run", *selection, *QUICK, "--out", str(whole)]) == 0
    shards = [tmp_path / f"shard{i}.jsonl" for i in (1, 2)]
    for i, path in enumerate(shards, start=1):
        assert main(["run", *selection, *QUICK, "--shard", f"{i}/2", "--out", str(path)]) == 0
    merged = tmp_path / "merged.jsonl"
    assert main(["results", "merge", *map(str, shards), "--out", str(merged)]) == 0
    assert "merged 6 cases from 2 runs" in capsys.readouterr().out
    assert _cases(merged) == _cases(whole)
    (header,) = [r for r in iter_records(merged) if isinstance(r, RunHeader)]
    assert header.request["shard"] is None and header.missing_shards == ()
    assert [m["shard"] for m in header.merged_from] == [[1, 2], [2, 2]]
    assert len({r.run_id for r in iter_records(merged)}) == 1


@pytest.mark.parametrize(
    "second, message",
    [
        (["--shard", "2/2", "--max-time", "0.02"], "their settings differ in max_time"),
        (["--shard", "1/2", "--max-time", "0.01"], "are the same shard (1/2)"),
        (
            ["--shard", "2/2", "--max-time", "0.01", "--dtypes", "bfloat16"],
            "their requests differ in dtypes",
        ),
    ],
)
def test_merging_shards_of_different_sweeps_is_refused(tmp_path, capsys, second, message):
    first, other = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert (
        main(["run", "-m", "perceptron", "-b", "1", *QUICK, "--shard", "1/2", "--out", str(first)])
        == 0
    )
    assert main(["run", "-m", "perceptron", "-b", "1", *BASE, *second, "--out", str(other)]) == 0
    capsys.readouterr()
    assert (
        main(["results", "merge", str(first), str(other), "--out", str(tmp_path / "m.jsonl")]) == 1
    )
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_missing_shard_is_reported_not_refused(tmp_path, capsys):
    shard = tmp_path / "s1.jsonl"
    assert (
        main(
            [
                "run",
                "-m",
                "perceptron,mlp",
                "-b",
                "1",
                *QUICK,
                "--shard",
                "1/2",
                "--out",
                str(shard),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["results", "merge", str(shard), "--out", str(tmp_path / "m.jsonl")]) == 0
    assert "missing shards: [2]" in capsys.readouterr().out
