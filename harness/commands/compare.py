"""`harness results` and `harness compare`: runs listed, and two runs (or an ab session's
sides) judged case by case."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table
from rich.text import Text

from harness import console
from harness.analysis import compare, sequential, significance
from harness.analysis.compare import SettingDifference
from harness.analysis.noise import MachineNoise, different_machines
from harness.analysis.sequential import ALPHA as SEQUENTIAL_ALPHA
from harness.errors import ResultsError, UsageError
from harness.measure.stats import format_bytes, format_seconds
from harness.store.columnar import Ingested, Store, is_store
from harness.store.filters import Filters
from harness.store.results import (
    environment_of,
    list_runs,
    merge_runs,
    result_files,
)
from harness.store.sources import load_selection


def cmd_results(args: argparse.Namespace) -> int:
    if args.paths and args.paths[0] == Path("merge"):
        if len(args.paths) < 2 or not args.out:
            raise UsageError("usage: harness results merge SHARD.jsonl... --out MERGED.jsonl")
        summary = merge_runs(args.paths[1:], args.out)
        missing = summary["missing_shards"]
        console.stdout.print(
            f"merged {summary['cases']} cases from {summary['runs']} runs into "
            f"{summary['out']}" + (f"; missing shards: {missing}" if missing else ""),
            soft_wrap=True,
        )
        return 0
    if args.paths and args.paths[0] == Path("ingest"):
        return ingest(args.paths[1:], args.store, args.kind, args.rebuild)
    if len(args.paths) == 1 and is_store(args.paths[0]):
        runs = Store.open(args.paths[0]).run_summaries()
    else:
        runs = list_runs(args.paths)
    if args.json:
        print(json.dumps(runs, indent=2))
    else:
        console.stdout.print(runs_table(runs))
    return 0


def ingest(paths: Sequence[Path], store: Path | None, kind: str | None, rebuild: bool) -> int:
    """``results ingest``: each file's runs stored whole; a damaged file is refused (one
    line) and the others go on; exit 1 if any was refused."""
    if not paths or store is None:
        raise UsageError(
            "usage: harness results ingest RUN.jsonl... --store DIR [--kind K] [--rebuild]"
        )
    target = Store.open(store, create=True)
    files = result_files(paths)
    done: list[Ingested] = []
    refused: list[str] = []
    with console.Progress(len(files), quiet=len(files) < 2) as progress:

        def told(path: Path, items: list[Ingested]) -> None:
            progress.finish(", ".join(f"{i.action} {i.cases} cases" for i in items) or "no runs")

        if rebuild:  # every file checked first, then ingested one by one
            position = {path: i for i, path in enumerate(files)}

            def each(path: Path, items: list[Ingested]) -> None:
                progress.start(position[path], path.name)
                told(path, items)

            done = target.rebuild(files, kind, each=each)
        else:
            for index, path in enumerate(files):
                progress.start(index, path.name)
                try:
                    items = target.ingest(path, kind)
                except ResultsError as exc:
                    refused.append(str(exc))
                    progress.finish("refused")
                    console.stderr.print(f"harness results ingest: {exc}", soft_wrap=True)
                    continue
                done += items
                told(path, items)
    actions = {a: sum(d.action == a for d in done) for a in ("stored", "replaced", "unchanged")}
    summary = ", ".join(f"{n} {a}" for a, n in actions.items() if n) or "no runs"
    console.stdout.print(
        f"{store}: {summary} ({sum(d.cases for d in done)} cases"
        + (f"; kinds: {', '.join(sorted({d.kind for d in done}))}" if done else "")
        + (f"; {len(refused)} file{'s' if len(refused) != 1 else ''} refused" if refused else "")
        + ")",
        soft_wrap=True,
    )
    return 1 if refused else 0


def cmd_compare(args: argparse.Namespace) -> int:
    return print_comparison(
        load_selection(args.baseline, Filters.of_options(args)),
        load_selection(args.candidate, Filters.of_options(args)),
        [args.baseline, args.candidate],
        args.metric,
        args.threshold,
        args.json,
        args.fail_on_regression,
    )


def print_comparison(
    baseline: pd.DataFrame,
    candidate: pd.DataFrame,
    names: Sequence[str],
    metric: str,
    threshold: float,
    as_json: bool,
    fail: bool,
    failures: Sequence[dict] = (),
) -> int:
    """The comparison's tables (or JSON); 1 if ``fail`` and a case regressed. ``failures``
    are cases with no verdict (a side of ``harness ab`` failed), listed after the table
    and among the JSON's cases."""
    table = compare.compare(baseline, candidate, metric, threshold)
    counts = compare.summarise(table, metric)
    only = compare.matched_cases(baseline, candidate)[1]
    environments = [environment_of(f.iloc[0]) for f in (baseline, candidate)]
    hardware = different_machines(environments)
    settings = compare.settings_differences(baseline, candidate)
    speedups = compare.geomean_speedups(table, metric=metric)
    regressed = bool(table["regressed"].any())
    if failures:
        counts["failed"] = len(failures)
    if as_json:
        print(
            json.dumps(
                {
                    "metric": metric,
                    "threshold": threshold,
                    "summary": counts,
                    "only_in": only,
                    "different_machines": hardware,
                    "different_settings": [dataclasses.asdict(d) for d in settings],
                    "geomean_speedups": speedups.to_dict("records"),
                    "cases": [*table.to_dict("records"), *failures],
                },
                indent=2,
                default=str,
            )
        )
    else:
        alpha = sequential.ALPHA if (table.get("method") == "pairs").any() else significance.ALPHA
        title = f"{metric}: {names[0]} -> {names[1]} (threshold {threshold:.1%}, q <= {alpha})"
        console.stdout.print(comparison_table(table.to_dict("records"), metric, title, hardware))
        if hardware or len(speedups) > 1:
            console.stdout.print(speedup_table(speedups.to_dict("records")))
        console.print_failures(failures)
        summary = ", ".join(f"{n} {v}" for v, n in counts.items())
        extra = ", ".join(f"{n} only in {side}" for side, n in only.items() if n)
        console.stdout.print(
            f"{len(table) + len(failures)} cases: {summary}" + (f"; {extra}" if extra else ""),
            soft_wrap=True,
        )
        console.print_lines(comparison_notes(table.to_dict("records"), settings))
    return 1 if regressed and fail else 0


VERDICT_STYLE = {
    "slower": "bold red",
    "faster": "green",
    "larger": "bold red",
    "smaller": "green",
    "no change": "dim",
    "inconclusive": "yellow",
}


def metric_value(value: float | None, metric: str) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    if metric == "latency":
        return format_seconds(value)
    if metric == "throughput":
        return f"{value:,.1f}/s"
    return format_bytes(int(value))


def _ratio_text(row: dict[str, Any]) -> tuple[str, str]:
    low, high = (row.get(k) for k in ("ci_low", "ci_high"))
    known = [v is not None and v == v for v in (low, high)]
    ci = (
        f"{low:.3f} - {high:.3f}" if all(known) else "open" if row.get("method") == "pairs" else "-"
    )
    return f"{row['ratio']:.3f}", ci


def comparison_table(
    rows: Sequence[dict[str, Any]], metric: str, title: str, hardware: bool = False
) -> Table:
    """Per case: both values, the ratio with its CI, the MDE, q-value and verdict;
    with ``hardware``, utilisation and memory of each side too."""
    table = Table(title=title, title_justify="left")
    sequential = any(row.get("method") == "pairs" for row in rows)
    # pairs of an ab session are bounded by a confidence sequence at its own level
    interval = f"{1 - SEQUENTIAL_ALPHA:.0%} CS" if sequential else "95% CI"
    columns = ["case", "baseline", "candidate", "ratio", interval, "MDE", "q", "verdict"]
    if sequential:
        columns += ["pairs", "time"]
    if hardware:
        columns += ["util base", "util cand", "mem base", "mem cand"]
    for column in columns:
        table.add_column(
            column,
            justify="left" if column in ("case", "verdict") else "right",
            no_wrap=column == "case",
        )
    for row in rows:
        ratio, ci = _ratio_text(row)
        q = f"{row['q_value']:.2g}" if row.get("q_value") is not None else "-"
        cells = [
            row["case"],
            metric_value(row["baseline"], metric),
            metric_value(row["candidate"], metric),
            ratio,
            ci,
            _percent(row.get("mde")),
            q,
            Text(row["verdict"], style=VERDICT_STYLE[row["verdict"]]),
        ]
        if sequential:
            pairs, took = row.get("pairs"), row.get("time_s")
            cells += [
                str(pairs) if pairs == pairs and pairs is not None else "-",
                f"{took:.0f} s" if took == took and took is not None else "-",
            ]
        if hardware:
            cells += [
                _percent(row.get("baseline_utilisation")),
                _percent(row.get("candidate_utilisation")),
                metric_value(row.get("baseline_memory"), "memory"),
                metric_value(row.get("candidate_memory"), "memory"),
            ]
        table.add_row(*cells)
    return table


def noise_line(noise: MachineNoise) -> str:
    """A run's machine noise, which ``harness compare`` needs to judge single processes."""
    from harness.analysis.noise import MIN_HEARTBEATS

    if noise.sd is None:
        return (
            f"machine noise: unknown ({noise.count} heartbeats; compare needs "
            f"{MIN_HEARTBEATS} to judge single processes)"
        )
    return f"machine noise: {noise.sd:.1%} (sd of {noise.count} heartbeats)"


MAX_SETTINGS_SHOWN = 6  # of a settings warning, which stays one line


def settings_warning(differences: Sequence[SettingDifference]) -> Text | None:
    """One line naming the settings that move timings on which the runs differ: part of
    each ratio may be theirs, not the code's. Plain text: the values come from files."""
    if not differences:
        return None
    shown = ", ".join(
        f"{d.name} {d.baseline} -> {d.candidate}" for d in differences[:MAX_SETTINGS_SHOWN]
    )
    more = len(differences) - MAX_SETTINGS_SHOWN
    return Text(
        f"warning: the runs differ in settings that move timings (baseline -> "
        f"candidate): {shown}" + (f", and {more} more" if more > 0 else "")
    )


def comparison_notes(
    rows: Sequence[dict[str, Any]], settings: Sequence[SettingDifference] = ()
) -> list[str | Text]:
    """Whether the runs' settings differ (``compare.settings_differences``), and what
    widened or held back the verdicts of cases with few processes a side: the runs'
    machine noise, or why it is unknown."""
    warning = settings_warning(settings)
    lines: list[str | Text] = [warning] if warning else []
    widened = [r for r in rows if r.get("samples_verdict")]
    if widened:
        noise = ", ".join(
            f"{side} {_span([r[f'{side}_noise'] for r in widened])}"
            for side in ("baseline", "candidate")
        )
        held = sum(
            r["samples_verdict"] in ("slower", "faster") and r["verdict"] != r["samples_verdict"]
            for r in widened
        )
        lines.append(
            f"machine noise: {noise} (heartbeats); it widened {len(widened)} "
            "single-process intervals"
            + (
                f" and held back {held} slower/faster verdicts of their samples alone"
                if held
                else ""
            )
        )
    notes: dict[str, int] = {}
    for row in rows:
        if row.get("note"):
            notes[row["note"]] = notes.get(row["note"], 0) + 1
    lines += [f"{count} cases inconclusive: {note}" for note, count in notes.items()]
    return lines


def _span(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    return _percent(low) if f"{low:.1%}" == f"{high:.1%}" else f"{low:.1%}-{_percent(high)}"


def _percent(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.1%}"


def speedup_table(rows: Sequence[dict[str, Any]]) -> Table:
    table = Table(
        title="geometric-mean speedup of candidate over baseline (>1: faster)", title_justify="left"
    )
    for column in ("suite", "dtype", "compile", "cases", "speedup"):
        table.add_column(column, justify="right" if column in ("cases", "speedup") else "left")
    for row in rows:
        table.add_row(
            str(row["suite"]),
            row["dtype"],
            row["compile_mode"],
            str(row["cases"]),
            f"{row['geomean_speedup']:.3f}x",
        )
    return table


def runs_table(runs: Sequence[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(runs)} runs", title_justify="left")
    for column in ("run", "time", "host", "commit", "torch", "cases", "file"):
        table.add_column(column, no_wrap=column in ("run", "time"))
    for run in runs:
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(run["statuses"].items()))
        resumed = f" (resumed x{run['resumed']})" if run.get("resumed") else ""
        table.add_row(
            run["run_id"] or "-",
            run["time"] or "-",
            run["hostname"] or "-",
            (run["commit"] or "-")[:10],
            run["torch"] or "-",
            f"{run['cases']}: {statuses or 'none'}{resumed}",
            run["file"],
        )
    return table
