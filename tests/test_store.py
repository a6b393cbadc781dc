"""The columnar results store: ingest, its guarantees, filters pushed down, and the same
answers from a store as from the JSON Lines files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.analysis import compare, history, report
from harness.cli import main
from harness.errors import ResultsError, UsageError
from harness.store import columnar
from harness.store.columnar import Store
from harness.store.filters import Filters
from harness.store.record import CaseRecord, RunHeader
from harness.store.results import ResultsWriter, load
from harness.store.sources import load_runs, load_selection
from tests.conftest import write_series

pytest.importorskip("pyarrow")

DATA = Path(__file__).parent / "data"


def _same_frames(files: pd.DataFrame, stored: pd.DataFrame) -> None:
    """Every column of the files' frame back from the store, value for value."""
    assert list(stored["run_id"]) == list(files["run_id"])
    for column in files.columns:
        assert column in stored.columns, column
        mine, theirs = files[column].tolist(), stored[column].tolist()
        for a, b in zip(mine, theirs):
            missing = [x is None or (isinstance(x, float) and x != x) or x is pd.NA for x in (a, b)]
            assert missing[0] == missing[1] and (missing[0] or a == b), (column, a, b)


def _fleet_run(path: Path, models: int, batches=(1, 2, 4, 8, 16), time="2026-11-03") -> Path:
    header = RunHeader(
        command=("harness", "run"),
        environment={"hostname": "h", "time": f"{time}T03:00:00+00:00", "cpu_model": "c"},
    )
    with ResultsWriter(path, header) as writer:
        for m in range(models):
            for batch in batches:
                writer.write_case(
                    CaseRecord(
                        model=f"m{m:02d}",
                        batch_size=batch,
                        dims={},
                        latency={"median": 1e-3 * batch, "samples": [1e-3 * batch] * 30},
                    )
                )
    return path


def test_ingest_gives_every_field_of_every_record_back(tmp_path):
    hostile = tmp_path / "hostile.jsonl"
    header = RunHeader(
        command=("harness", "run", "<script>"),
        environment={"hostname": "a\x00b<b>", "time": "2026-11-02T01:00:00+01:00"},
        extra={"later_key": {"nested": [1, 2]}},
    )
    with ResultsWriter(hostile, header) as writer:
        writer.write_case(
            CaseRecord(
                model="m<i>\x00",
                batch_size=3,
                dims={"T": 7},
                status="error",
                error="boom \u202e",
                latency={"median": 9.99e8, "samples": [1.5, 5e8 + 0.25, 1e-300]},
                extra={"unknown": 10**30},
            )
        )
    store = Store.open(tmp_path / "store", create=True)
    for path in (DATA / "results-v1.jsonl", DATA / "ab-candidate-v1.jsonl", hostile):
        store.ingest(path)
    files = load([DATA / "results-v1.jsonl", DATA / "ab-candidate-v1.jsonl", hostile])
    stored = store.load()
    order = {run: i for i, run in enumerate(stored["run_id"].drop_duplicates())}
    files = files.sort_values("run_id", key=lambda s: s.map(order), kind="stable")
    _same_frames(files.reset_index(drop=True), stored)
    assert stored["unknown"].dropna().tolist() == [10**30]
    assert "later_key.nested" not in stored.columns  # a header's unknown key: not a column
    headers = store.runs().set_index("run_id")["header"]
    assert json.loads(headers[header.run_id])["later_key"] == {"nested": [1, 2]}


def test_a_run_ingested_twice_is_stored_once(tmp_path):
    store = Store.open(tmp_path / "store", create=True)
    first = store.ingest(DATA / "results-v1.jsonl")
    again = store.ingest(DATA / "results-v1.jsonl")
    assert [i.action for i in first] == ["stored"] * 3
    assert [i.action for i in again] == ["unchanged"] * 3
    assert len(store.load()) == len(load(DATA / "results-v1.jsonl")) == 11


def test_a_run_ingested_again_with_more_cases_is_replaced_whole(tmp_path):
    path = _fleet_run(tmp_path / "run.jsonl", models=2)
    store = Store.open(tmp_path / "store", create=True)
    store.ingest(path)
    header = next(iter(json.loads(line) for line in path.read_text().splitlines()))
    resumed = RunHeader.from_json({**header, "resumed": True})
    with ResultsWriter(path, resumed) as writer:  # --resume appends to the same run
        writer.write_case(CaseRecord(model="late", batch_size=1, dims={}, status="timeout"))
    (done,) = store.ingest(path)
    assert done.action == "replaced"
    stored = store.load()
    assert len(stored) == 11 and stored["model"].tolist()[-1] == "late"


def test_concurrent_ingests_from_two_processes_store_each_run_once(tmp_path):
    paths = [
        _fleet_run(tmp_path / f"night-{i}.jsonl", 20, time=f"2026-11-0{i + 1}") for i in range(4)
    ]
    store = tmp_path / "store"
    command = [
        sys.executable,
        "-m",
        "harness",
        "results",
        "ingest",
        *map(str, paths),
        "--store",
        str(store),
    ]
    jobs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)
    ]
    for job in jobs:
        out, err = job.communicate(timeout=120)
        assert job.returncode == 0, err
    stored = Store.open(store).load()
    assert len(stored) == 4 * 100
    assert stored.groupby(["run_id", "model", "batch_size"]).size().max() == 1


def test_a_damaged_run_is_refused_in_one_line_and_nothing_is_written(tmp_path, capsys):
    good = _fleet_run(tmp_path / "good.jsonl", models=1)
    damaged = tmp_path / "damaged.jsonl"
    lines = good.read_text().splitlines()
    damaged.write_text(
        "\n".join([lines[0], lines[1], '{"record": "case", "model"', lines[2]]) + "\n"
    )
    store = tmp_path / "store"
    assert main(["results", "ingest", str(damaged), "--store", str(store)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "damaged.jsonl:3: skipped: not JSON" in err and "nothing from it was stored" in err
    assert not list(store.rglob("*.parquet"))
    assert main(["results", "ingest", str(good), str(damaged), "--store", str(store)]) == 1
    assert Store.open(store).load()["model"].tolist() == ["m00"] * 5  # the good one went in


def test_a_query_for_one_model_reads_only_its_samples(tmp_path):
    store = Store.open(tmp_path / "store", create=True)
    store.ingest(_fleet_run(tmp_path / "run.jsonl", models=100))  # 500 cases
    one = store.load(Filters(models=("m42",)))
    assert one["model"].unique().tolist() == ["m42"] and len(one) == 5
    assert one["latency.samples"].map(len).tolist() == [30] * 5
    assert store.rows_read["cases"] == 5
    assert store.rows_read["samples"] <= columnar.ROW_GROUP < 500
    store.load()
    assert store.rows_read["samples"] == 500
    summary = store.load(Filters(models=("m42",)), summary=True)
    assert "samples" not in store.rows_read and "latency.samples" not in summary.columns
    assert summary["latency.sample_count"].tolist() == [30] * 5


def test_filters_keep_the_same_cases_from_a_store_as_from_files(tmp_path):
    paths = write_series(tmp_path / "runs", runs=6)
    store = Store.open(tmp_path / "store", create=True)
    for path in paths:
        store.ingest(path, kind="box")
    commit = json.loads(paths[2].read_text().splitlines()[0])["environment"]["git"]["commit"]
    for filters in (
        Filters(models=("mlp",)),
        Filters(options={"dtype": ("bfloat16",), "batch_size": ("8",)}),
        Filters(since="2026-11-03", until="2026-11-04T12:00"),
        Filters(commits=(commit[:7],)),
        Filters(kinds=("box",), models=("conv",)),
    ):
        stored = store.load(filters)
        files = filters.keep_cases(load(paths).assign(kind="box")).reset_index(drop=True)
        assert len(stored) and len(stored) < len(load(paths))
        _same_frames(files, stored)
    assert store.load(Filters(kinds=("other",))).empty
    from_files = load(paths)  # files have no kind column: their runs' environment says it
    assert len(Filters(kinds=("Test CPU",)).keep_cases(from_files)) == len(from_files)
    assert Filters(kinds=("box",)).keep_cases(from_files).empty


def test_history_report_and_compare_give_the_same_answers_from_a_store(tmp_path, capsys):
    paths = write_series(
        tmp_path / "runs", runs=14, steps={("mlp", 8, "float32", "none"): (7, 1.2)}
    )
    store = tmp_path / "store"
    assert main(["results", "ingest", *map(str, paths), "--store", str(store)]) == 0
    capsys.readouterr()
    answers = []
    for source in ([str(tmp_path / "runs")], [str(store)]):
        assert main(["history", *source, "--json"]) == 0
        answers.append(json.loads(capsys.readouterr().out))
    assert answers[0] == answers[1]
    assert [s["index"] for s in answers[0]["steps"]] == [7]
    summary = load_runs([store], summary=True)
    assert history.history(summary).steps == history.history(load_runs([tmp_path / "runs"])).steps
    run_ids = [json.loads(p.read_text().splitlines()[0])["run_id"] for p in paths]
    tables = [
        compare.compare(load_selection(a), load_selection(b), "latency", 0.05)
        for a, b in ((paths[5], paths[9]), (f"{store}#{run_ids[5]}", f"{store}#{run_ids[9]}"))
    ]
    pd.testing.assert_frame_equal(tables[0], tables[1])
    pages = [report.render(load_runs(source), "t") for source in ([tmp_path / "runs"], [store])]
    made = re.compile(r"\d{4}-\d\d-\d\dT[\d:]{8}\+00:00 by")  # when the page was made
    assert made.sub("", pages[0]) == made.sub("", pages[1]) and made.search(pages[0])


def test_compaction_keeps_each_run_once_at_its_latest_version(tmp_path):
    store = Store.open(tmp_path / "store", create=True)
    paths = [
        _fleet_run(tmp_path / f"n{i}.jsonl", 3, time=f"2026-11-{i + 1:02d}")
        for i in range(columnar.COMPACT_AFTER + 2)
    ]
    for path in paths:
        store.ingest(path, kind="k")
    partition = store.data / "cases" / "kind=k" / "month=2026-11"
    assert len(list(partition.glob("*.parquet"))) < len(paths)
    assert (partition / columnar.COMPACTED).is_file()
    stored = store.load()
    assert len(stored) == 15 * len(paths)
    lines = paths[0].read_text().splitlines()
    paths[0].write_text("\n".join([lines[0], *lines[1:4]]) + "\n")  # the run rewritten shorter
    assert store.ingest(paths[0], kind="k")[0].action == "replaced"
    assert len(store.load()) == 15 * len(paths) - 12
    assert len(store.runs()) == len(paths)
    store.ingest(_fleet_run(tmp_path / "december.jsonl", 3, time="2026-12-01"), kind="k")
    assert [p.name for p in partition.glob("*.parquet")] == [columnar.COMPACTED]  # month done
    assert len(store.load()) == 15 * len(paths) - 12 + 15


def test_a_store_rebuilt_from_files_holds_exactly_them(tmp_path):
    store = Store.open(tmp_path / "store", create=True)
    store.ingest(DATA / "results-v1.jsonl")
    store.rebuild([DATA / "ab-candidate-v1.jsonl"])
    assert set(store.load()["file"]) == {str(DATA / "ab-candidate-v1.jsonl")}
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text("not json\n")
    with pytest.raises(ResultsError, match="damaged.jsonl"):
        store.rebuild([DATA / "results-v1.jsonl", damaged])
    assert set(store.load()["file"]) == {str(DATA / "ab-candidate-v1.jsonl")}  # unchanged


def test_a_store_of_another_schema_or_layout_says_to_rebuild(tmp_path):
    store = Store.open(tmp_path / "store", create=True)
    store.ingest(DATA / "results-v1.jsonl")
    store.data.rename(tmp_path / "store" / "schema-1")
    with pytest.raises(ResultsError, match="holds schema-1 data.*--rebuild"):
        store.load()
    (tmp_path / "store" / columnar.MARKER).write_text('{"store": "harness", "layout": 9}')
    with pytest.raises(ResultsError, match="layout 9.*rebuild"):
        Store.open(tmp_path / "store")
    with pytest.raises(ResultsError, match="not a results store"):
        Store.open(tmp_path)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("mine")
    with pytest.raises(ResultsError, match="other files in it"):
        Store.open(tmp_path / "full", create=True)


def test_a_damaged_store_file_is_one_line_not_a_traceback(tmp_path, capsys):
    store = Store.open(tmp_path / "store", create=True)
    store.ingest(DATA / "results-v1.jsonl")
    victim = next((store.data / "cases").rglob("*.parquet"))
    victim.write_bytes(b"PAR1 garbage")
    assert main(["history", str(tmp_path / "store")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "damaged" in err and "rebuild" in err


def test_results_lists_a_stores_runs_with_their_kind(tmp_path, capsys):
    assert main(["results", "ingest", str(DATA / "results-v1.jsonl"), "--store",
                 str(tmp_path / "s"), "--kind", "Big Box/../x"]) == 0  # fmt: skip
    assert "kinds: big-box-x" in capsys.readouterr().out  # no path parts in a kind
    assert main(["results", str(tmp_path / "s"), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in runs] == ["big-box-x"] * 3
    assert [r["cases"] for r in runs] == [8, 2, 1]
    assert runs[0]["statuses"] == {"ok": 8}


def test_filter_options_are_checked_in_one_line(capsys):
    with pytest.raises(UsageError, match="cannot filter on colour"):
        Filters(options={"colour": ("red",)})
    with pytest.raises(UsageError, match="batch_size is a whole number"):
        Filters(options={"batch_size": ("eight",)})
    frame = pd.DataFrame({"batch_size": [8.0, None, 4.0]})  # a missing size makes floats
    assert len(Filters(options={"batch_size": ("8",)}).keep_cases(frame)) == 1
    assert main(["history", "results", "--since", "yesterday"]) == 2
    assert "is not an ISO date" in capsys.readouterr().err


def test_without_pyarrow_the_store_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(UsageError, match=r"pip install 'harness\[store\]'"):
        Store.open(tmp_path / "store", create=True).ingest(DATA / "results-v1.jsonl")


def test_reading_results_does_not_import_torch(tmp_path):
    store, run = str(tmp_path / "store"), str(DATA / "results-v1.jsonl")
    probe = (
        "import sys; from harness.cli import main; "
        f"main(['results', 'ingest', {run!r}, '--store', {store!r}]); "
        f"main(['history', {store!r}]); main(['compare', {run!r}, {run!r}]); "
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr


def test_the_python_api_loads_a_store_with_filters(tmp_path):
    import harness

    store = Store.open(tmp_path / "store", create=True)
    store.ingest(DATA / "results-v1.jsonl")
    cases = harness.load(tmp_path / "store", model="mlp", where={"dtype": "bfloat16"})
    assert set(cases["model"]) == {"mlp"} and set(cases["dtype"]) == {"bfloat16"}
    assert len(cases) == len(
        harness.load(DATA / "results-v1.jsonl", model="mlp", where={"dtype": "bfloat16"})
    )
    with pytest.raises(UsageError, match="cannot filter on colour"):
        harness.load(tmp_path / "store", where={"colour": "red"})


def test_ingest_and_rebuild_from_the_command_line_tell_each_file(tmp_path, capsys):
    paths = [_fleet_run(tmp_path / f"n{i}.jsonl", 2, time=f"2026-11-0{i + 1}") for i in range(3)]
    store = str(tmp_path / "store")
    assert main(["results", "ingest", *map(str, paths), "--store", store]) == 0
    captured = capsys.readouterr()
    assert "3 stored (30 cases" in captured.out
    assert "[3/3] n2.jsonl ... stored 10 cases" in captured.err
    assert main(["results", "ingest", str(paths[0]), "--store", store, "--rebuild"]) == 0
    assert "1 stored (10 cases" in capsys.readouterr().out
    assert len(Store.open(store).runs()) == 1
    assert main(["results", "ingest", str(paths[0])]) == 2
    assert "--store DIR" in capsys.readouterr().err
