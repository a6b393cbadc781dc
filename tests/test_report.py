"""`harness report`: the HTML renders in headless Chromium without errors, offline."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from harness.analysis import report
from harness.cli import main
from harness.store.record import CaseRecord, RunHeader
from harness.store.results import ResultsWriter
from harness.store.sources import load_runs
from tests.conftest import series_record, write_series

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium not installed: apt-get install chromium"
)


def open_in_chromium(page: Path, profile: Path, timeout: float = 90) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and every console message Chromium logged."""
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        dom, log = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 0, log[-2000:]
    return dom, [line for line in log.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def _series_report(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    runs.mkdir()
    write_series(
        runs,
        steps={("mlp", 8, "float32", "none"): (6, 1.15), ("conv", 4, "float32", "none"): (8, 0.88)},
    )
    out = tmp_path / "report.html"
    assert main(["report", str(runs), "-o", str(out), "--title", "Nightly <cpu>"]) == 0
    return out


@needs_chromium
def test_series_report_renders_every_section_without_console_errors(tmp_path):
    dom, console = open_in_chromium(_series_report(tmp_path), tmp_path / "profile")
    assert console == []
    html = re.search(r"<html[^>]*>", dom).group(0)
    assert 'data-ready="1"' in html and "data-errors" not in html
    for section in ("runs", "latency", "throughput", "memory", "comparison", "history"):
        assert f'<section id="{section}">' in dom
    # 2 models x (latency, throughput, memory) + speedup bars + 7 history charts
    assert dom.count("<svg") == 14
    assert "<h1>Nightly &lt;cpu&gt;</h1>" in dom
    history = dom[dom.index('<section id="history">') :]
    assert "+16." in history  # the regression's label: the change of level of the runs
    assert history.count(f'stroke="{report.VERDICT_COLOURS["slower"]}"') == 1
    assert history.count(f'stroke="{report.VERDICT_COLOURS["faster"]}"') == 1
    comparison = dom[dom.index('<section id="comparison">') : dom.index('<section id="history">')]
    # two single-process runs cannot tell a 15 % step from how processes land (the
    # placement floor, 8.5 % a side); the history of twelve runs above can
    assert "0 slower, 0 faster, 0 no change, 7 inconclusive" in comparison


@needs_chromium
def test_the_filter_in_the_address_hides_other_cases(tmp_path):
    page = _series_report(tmp_path)
    linked = tmp_path / "linked.html"  # --dump-dom takes no fragment, so the page sets it
    linked.write_text(
        page.read_text().replace(
            "<head>", "<head><script>location.hash='#filter=conv%5BB%3D4';</script>", 1
        )
    )
    dom, console = open_in_chromium(linked, tmp_path / "profile")
    assert console == []
    figures = re.findall(r'<figure data-case="([^"]*)"( hidden="")?', dom)
    shown = [names for names, hidden in figures if not hidden]
    assert shown and all("conv[b=4" in names for names in shown)
    assert len(shown) < len(figures)


@needs_chromium
def test_a_fetch_from_the_network_would_be_blocked_and_reported(tmp_path):
    """The page's security policy keeps it offline; the check sees any breach."""
    page = _series_report(tmp_path)
    leaky = tmp_path / "leaky.html"
    leaky.write_text(
        page.read_text().replace(
            "</main>", '<img src="https://example.invalid/pixel.png"></main>', 1
        )
    )
    _, console = open_in_chromium(leaky, tmp_path / "profile")
    assert any("Content Security Policy" in line for line in console)


@needs_chromium
def test_report_of_real_runs_renders(tmp_path):
    out = tmp_path / "real.jsonl"
    assert (
        main(
            [
                "run",
                "-m",
                "perceptron",
                "-b",
                "1,2",
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
    page = tmp_path / "real.html"
    assert main(["report", str(out), "-o", str(page)]) == 0
    dom, console = open_in_chromium(page, tmp_path / "profile")
    assert console == [] and 'data-ready="1"' in dom
    assert dom.count("<svg") == 3  # latency, throughput and memory of the one model
    assert 'aria-label="throughput of perceptron"' in dom


def test_text_from_results_files_is_escaped(tmp_path):
    hostile = '<img src=x onerror="alert(1)">'
    env = {"hostname": hostile, "time": "2026-11-23T00:00:00+00:00", "git": {"commit": None}}
    with ResultsWriter(tmp_path / "r.jsonl", RunHeader(environment=env)) as writer:
        record = series_record(hostile, 2, "float32", "none", [1e-3, 1.1e-3, 0.9e-3])
        writer.write_case(CaseRecord(**record))
    html = report.render(load_runs([tmp_path]), title=hostile)
    assert hostile not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html


def test_one_run_gives_no_comparison_or_history(tmp_path):
    write_series(tmp_path, runs=1)
    html = report.render(load_runs([tmp_path]))
    assert '<section id="latency">' in html and '<section id="memory">' in html
    assert '<section id="comparison">' not in html and '<section id="history">' not in html


def test_bad_input_and_unwritable_output_are_one_line_errors(tmp_path, capsys):
    notes = tmp_path / "notes.jsonl"
    notes.write_text("not results\n")
    (tmp_path / "ok").mkdir()
    write_series(tmp_path / "ok", runs=2)
    for args, message in (
        (["report", str(tmp_path / "missing")], "does not exist"),
        (["report", str(notes)], "not a harness results file"),
        (["report", str(tmp_path / "ok"), "-o", "/dev/full"], "cannot write the report"),
    ):
        assert main(args) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_:  # a folder outside this one is not made up
        main(["report", str(tmp_path / "ok"), "-o", str(tmp_path / "no" / "such" / "r.html")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1
    assert f"folder {tmp_path / 'no'} does not exist" in err


def _bisect_document(culprit: str, bad: str, model: str = "mlp", batch: int = 8) -> dict:
    """What `harness bisect --json` writes, for one case."""
    return {
        "good": {"commit": "00" * 20, "subject": "good"},
        "bad": {"commit": bad, "subject": "bad"},
        "cases": [
            {
                "case": f"{model}[B={batch}]",
                "model": model,
                "batch_size": batch,
                "device": "cpu",
                "dtype": "float32",
                "compile_mode": "none",
                "mode": "infer",
                "culprit": culprit,
                "subject": "<b>fuse</b> | ops",
                "ratio": 1.15,
                "ci_low": 1.1,
                "ci_high": 1.2,
            }
        ],
    }


def test_a_bisected_culprit_is_listed_and_marked_on_its_case_history(tmp_path):
    commits = [f"{i:02d}" + "cd" * 19 for i in range(12)]
    write_series(tmp_path, steps={("mlp", 8, "float32", "none"): (6, 1.15)}, commits=commits)
    runs = load_runs([tmp_path])
    documents = [
        _bisect_document(commits[6], commits[11]),  # a run measured the culprit
        _bisect_document("ef" * 20, commits[9], batch=64),  # one between two runs
        {"cases": [{"culprit": "<script>", "model": "mlp"}]},
        ["not a document"],
    ]
    culprits = report.culprits_of(documents)
    assert [c.commit for c in culprits] == [commits[6], "ef" * 20]  # the malformed ones left
    html = report.render(runs, culprits=culprits)
    section = html[html.index('<section id="bisect">') : html.index('<section id="history">')]
    assert "&lt;b&gt;fuse&lt;/b&gt; | ops" in section and "<b>fuse" not in html
    assert f"run {commits[6][:8]} (it)" in section and f"run {commits[9][:8]} (the bad" in section
    history = html[html.index('<section id="history">') :]
    assert history.count(f'stroke="{report.CULPRIT_COLOUR}"') == 2
    assert history.count(f">culprit {commits[6][:7]}</text>") == 1
    assert "culprit efefefe" in history


def test_report_bisect_option_reads_the_document_and_refuses_a_broken_one(tmp_path, capsys):
    commits = [f"{i:02d}" + "cd" * 19 for i in range(4)]
    write_series(tmp_path / "runs", runs=4, commits=commits)
    document = tmp_path / "bisect.json"
    document.write_text(json.dumps(_bisect_document(commits[2], commits[3])))
    out = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "runs"), "-o", str(out), "--bisect", str(document)]) == 0
    assert f">culprit {commits[2][:7]}</text>" in out.read_text()
    document.write_bytes(b"\x00\xff{")
    assert main(["report", str(tmp_path / "runs"), "-o", str(out), "--bisect", str(document)]) == 2
    err = capsys.readouterr().err
    assert "is not JSON" in err and len(err.strip().splitlines()) == 1
