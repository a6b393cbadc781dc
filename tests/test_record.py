"""The typed record: one writer, one reader, the frame view, and files of the old schema.

``tests/data/results-v1.jsonl`` and ``ab-candidate-v1.jsonl`` were written by harness
0.2.0 (commit 9c8d532, schema 1) with ``harness run`` (two models, infer and train,
float32 and bfloat16, an amp run with two repeats, a searched batch size) and
``harness ab``; they are read here exactly as a user's old files would be.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.store import frame
from harness.store.record import SCHEMA_VERSION, CaseRecord, RunHeader
from harness.store.results import CorruptLineWarning, ResultsWriter, iter_records, load, merge_runs
from harness.sweep.plan import Case

DATA = Path(__file__).parent / "data"
V1_RUN, V1_AB = DATA / "results-v1.jsonl", DATA / "ab-candidate-v1.jsonl"


def _full_record() -> CaseRecord:
    """A record with a value in every field, so a round trip can lose none."""
    values = {
        "model": "mlp",
        "batch_size": 8,
        "dims": {"NIN": 100, "NHID": 7},
        "device": "cuda",
        "dtype": "bfloat16",
        "precision": "amp",
        "compile_mode": "default",
        "backend": "aot_eager",
        "mode": "train",
        "repeat": 2,
        "suite": "mlps",
        "plugin": "dense",
        "status": "error",
        "error": "RuntimeError: boom",
        "traceback": "File x, line 1\nRuntimeError: boom",
        "output_tail": "some output",
        "threads": 3,
        "params": 1234,
        "latency": {"unit": "s", "median": 1e-3, "samples": [1e-3, 2e-3], "per": "call"},
        "throughput": 8000.0,
        "heartbeat": {"unit": "s", "before": 1e-5, "after": 2e-5},
        "memory": {"tensor_peak_bytes": 10},
        "flops": {"per_step": 100},
        "compile": {"time_s": 1.5, "recompiles": 0},
        "speedup_vs_eager": 1.2,
        "batch_search": {"max_batch_size": 8, "limit": 64, "probes": [[8, "ok"]]},
        "isolation": "process",
        "node": {"id": "n1", "labels": {"zone": "a"}},
        "environment": {"hostname": "node-1"},
        "interleaved": {"session": "s", "pair": 1, "side": "baseline", "turns": [2]},
        "run_id": "run1",
        "extra": {"round": 3, "later_field": {"a": 1}},
    }
    assert set(values) == {f.name for f in dataclasses.fields(CaseRecord)}
    return CaseRecord(**values)


def test_every_field_of_a_record_comes_back_from_its_file_as_written(tmp_path):
    record = _full_record()
    header = RunHeader(
        command=("harness", "run"),
        request={"models": ["mlp"]},
        environment={"hostname": "box", "git": {"commit": "abc", "dirty": False}},
        settings={"max_time": 1.0},
        plugins=("my_plugin",),
        disabled_plugins=("gans",),
        executor={"kind": "ray"},
        side={"role": "baseline"},
        resumed=True,
        merged_from=({"file": "a.jsonl"},),
        missing_shards=(2,),
        extra={"note": "kept"},
    )
    with ResultsWriter(tmp_path / "r.jsonl", header) as writer:
        writer.write_case(record)
    read_header, read_case = iter_records(tmp_path / "r.jsonl")
    assert read_header == header
    assert read_case == dataclasses.replace(record, run_id=header.run_id)


def test_a_line_holds_every_field_with_null_for_the_unknown():
    line = CaseRecord.of_case(Case("mlp", 2, {"NIN": 100})).to_json()
    assert line["schema"] == SCHEMA_VERSION == 2
    assert {f.name for f in dataclasses.fields(CaseRecord)} - {"extra"} <= set(line)
    assert line["latency"] is None and line["throughput"] is None and line["backend"] is None


def test_a_version_2_line_without_its_whole_identity_is_skipped(tmp_path):
    path = tmp_path / "r.jsonl"
    with ResultsWriter(path, RunHeader()) as writer:
        writer.write_case(CaseRecord("a", 1, {}, status="skipped", error="not needed"))
    line = json.loads(path.read_text().splitlines()[1])
    del line["precision"]
    with path.open("a") as fh:
        fh.write(json.dumps(line) + "\n")
    with pytest.warns(CorruptLineWarning, match=r"r.jsonl:3: skipped: no precision"):
        cases = [r for r in iter_records(path) if isinstance(r, CaseRecord)]
    assert len(cases) == 1


def test_files_of_the_previous_release_read_as_typed_records_of_this_version():
    records = list(iter_records(V1_RUN))
    headers = [r for r in records if isinstance(r, RunHeader)]
    cases = [r for r in records if isinstance(r, CaseRecord)]
    assert len(headers) == 3 and len(cases) == 11 and all(c.ok for c in cases)
    assert {c.label for c in cases} >= {
        "perceptron[B=2,NIN=100]",
        "mlp[B=2,NHID=1024,NIN=100,NOUT=20,bfloat16,train]",
        "perceptron[B=2,NIN=100,bfloat16,amp]#2",
        "perceptron[B=4,NIN=100]",  # the searched one, at the batch size it measured
    }
    searched = cases[-1]
    assert searched.key().batch_size is None and searched.batch_search["max_batch_size"] == 4
    assert headers[0].commit == "9c8d532e0a294fc7ab8b90354c295689f438d50e"
    assert headers[1].request["precision"] == "amp" and headers[0].plugins == ()
    (ab_header, *pair) = iter_records(V1_AB)
    assert ab_header.side["role"] == "candidate" and pair[0].interleaved["side"] == "candidate"


def test_a_version_1_line_gets_the_identity_its_readers_assumed(tmp_path):
    path = tmp_path / "old.jsonl"
    old = {
        "record": "case",
        "schema": 1,
        "run_id": "r",
        "model": "m",
        "batch_size": 4,
        "device": "cpu",
        "dtype": "float32",
        "compile_mode": "default",
        "mode": "infer",
        "dims": {},
        "status": "ok",
        "latency": {"median": 1e-3, "block_size": 16},
        "source": "somewhere",
    }
    path.write_text(
        json.dumps({"record": "run", "schema": 1, "run_id": "r"}) + "\n" + json.dumps(old) + "\n"
    )
    (_, case) = iter_records(path)
    assert (case.precision, case.backend, case.repeat) == ("cast", "inductor", 0)
    assert case.latency["per"] == "block" and case.extra == {"source": "somewhere"}
    assert case.label == "m[B=4,compile=default]"


def test_a_run_of_the_previous_release_compares_with_one_of_this_release(tmp_path, capsys):
    new = tmp_path / "new.jsonl"
    with ResultsWriter(new, RunHeader(environment={"hostname": "vm"})) as writer:
        for case in iter_records(V1_RUN):
            if isinstance(case, CaseRecord) and case.run_id.startswith("29be"):
                slower = [s * 2 for s in case.latency["samples"]]
                writer.write_case(
                    dataclasses.replace(case, latency={**case.latency, "samples": slower})
                )
    assert main(["compare", f"{V1_RUN}#29be", str(new), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["cases"]
    assert len(rows) == 8 and all(r["ratio"] == pytest.approx(2, rel=0.05) for r in rows)


def test_the_frame_has_a_column_per_dimension_so_groupby_works():
    cases = load(V1_RUN)
    assert cases["dims.NIN"].dtype == pd.Int64Dtype()
    assert cases["dims.NHID"].isna().sum() == 7  # the perceptron has no hidden layer
    assert cases.groupby("dims.NHID")["model"].size().to_dict() == {1024: 4}
    assert cases.loc[0, "dims"] == {"NIN": 100} and "record" not in cases
    assert {"env.hostname", "settings.max_time", "memory.tensor_peak_bytes"} <= set(cases)


def test_the_frame_documents_every_column_a_record_gives():
    for column in frame.frame([("f", {}, _full_record())]).columns:
        name = column.split(".")[0]
        assert f"``{name}" in frame.__doc__ or name in ("round", "later_field"), column


def test_a_merge_keeps_keys_this_version_does_not_know(tmp_path):
    shard = tmp_path / "shard.jsonl"
    shutil.copy(V1_RUN, shard)
    with shard.open("a") as fh:
        header = {"record": "run", "schema": 1, "run_id": "x1", "request": {"shard": [1, 1]}}
        case = json.loads(V1_RUN.read_text().splitlines()[1])
        fh.write(json.dumps(header) + "\n")
        fh.write(json.dumps({**case, "run_id": "x1", "from_the_future": [1, 2]}) + "\n")
    merge_runs([shard], tmp_path / "merged.jsonl")
    (_, merged) = iter_records(tmp_path / "merged.jsonl")
    assert merged.extra == {"from_the_future": [1, 2]}
    assert json.loads((tmp_path / "merged.jsonl").read_text().splitlines()[1])["schema"] == 2
