"""Results files: durable JSON Lines, loaded back as a tidy DataFrame, damage reported."""

from __future__ import annotations

import json

import pytest

from harness.errors import ResultsError
from harness.store.record import CaseRecord, RunHeader
from harness.store.results import SCHEMA_VERSION, CorruptLineWarning, ResultsWriter, load

ENV = {"torch_version": "2.13.0", "threads": 2, "git": {"commit": "abc"}}


def _case(model: str, median: float, **measured) -> CaseRecord:
    return CaseRecord(
        model=model,
        batch_size=2,
        dims={"H": 64},
        latency={"median": median, "samples": [median, median * 1.1]},
        throughput=2 / median,
        **measured,
    )


def _write(path, *cases) -> str:
    with ResultsWriter(path, RunHeader(environment=ENV)) as writer:
        for case in cases:
            writer.write_case(case)
    return writer.run_id


def test_round_trip_gives_one_row_per_case_with_environment(tmp_path):
    path = tmp_path / "r.jsonl"
    run_id = _write(path, _case("a", 0.5), _case("b", 0.25))
    frame = load(path)
    assert list(frame["model"]) == ["a", "b"]
    assert list(frame["latency.median"]) == [0.5, 0.25]
    assert frame.loc[0, "latency.samples"] == [0.5, 0.55]
    assert frame.loc[0, "dims"] == {"H": 64}
    assert set(frame["run_id"]) == {run_id}
    assert list(frame["env.torch_version"]) == ["2.13.0", "2.13.0"]
    assert list(frame["env.git.commit"]) == ["abc", "abc"]
    assert "record" not in frame.columns


def test_every_line_is_plain_json_with_schema_and_kind(tmp_path):
    path = tmp_path / "r.jsonl"
    _write(path, _case("a", 0.5))
    header, case = (json.loads(line) for line in path.read_text().splitlines())
    assert (header["record"], header["schema"]) == ("run", SCHEMA_VERSION)
    assert (case["record"], case["run_id"]) == ("case", header["run_id"])


def test_writing_to_an_existing_file_appends_a_second_run(tmp_path):
    path = tmp_path / "r.jsonl"
    first = _write(path, _case("a", 0.5))
    second = _write(path, _case("a", 0.4))
    frame = load(path)
    assert list(frame["run_id"]) == [first, second]


def test_a_directory_loads_every_results_file_in_it(tmp_path):
    _write(tmp_path / "one.jsonl", _case("a", 0.5))
    (tmp_path / "nested").mkdir()
    _write(tmp_path / "nested" / "two.jsonl", _case("b", 0.5))
    assert sorted(load(tmp_path)["model"]) == ["a", "b"]


def test_a_corrupt_line_is_reported_with_file_and_line_and_the_rest_kept(tmp_path):
    path = tmp_path / "r.jsonl"
    _write(path, _case("a", 0.5))
    with path.open("a") as fh:
        fh.write('{"record": "case", "sch\n')  # a case cut short by kill -9
    _write(path, _case("b", 0.5))
    with pytest.warns(CorruptLineWarning, match=rf"{path}:3: skipped"):
        frame = load(path)
    assert list(frame["model"]) == ["a", "b"]


def test_a_newer_schema_is_refused_with_an_upgrade_hint(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"record": "run", "schema": SCHEMA_VERSION + 1}) + "\n")
    newer = SCHEMA_VERSION + 1
    with pytest.raises(ResultsError, match=rf"r.jsonl:1: results schema {newer} is newer.*upgrade"):
        load(path)


def test_a_file_that_is_not_a_results_file_is_refused(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text('{"hello": "world"}\n')
    with pytest.raises(
        ResultsError, match=r"notes.jsonl: no valid run: not a harness .*line 1: record is None"
    ):
        load(path)


def test_missing_path_and_empty_directory_are_errors(tmp_path):
    with pytest.raises(ResultsError, match="does not exist"):
        load(tmp_path / "missing.jsonl")
    with pytest.raises(ResultsError, match="no .jsonl results files"):
        load(tmp_path)


def test_results_hold_no_nan_or_infinity_those_figures_are_written_as_unknown(tmp_path):
    path = tmp_path / "r.jsonl"
    _write(path, _case("a", float("nan"), flops={"per_step": float("inf")}))
    case = json.loads(path.read_text().splitlines()[1])  # plain JSON: no NaN or Infinity
    assert case["latency"] == {"median": None, "samples": [None, None]}
    assert case["throughput"] is None and case["flops"] == {"per_step": None}
