"""The commands that read results: `results`, `compare`, `history`, `report`,
`import-asv` and `export`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harness import compare, console, history, report, sequential, significance
from harness.asv_import import load_asv_runs
from harness.commands import registry_of
from harness.errors import UsageError
from harness.export import to_pytest_benchmark
from harness.noise import different_machines
from harness.results import (
    ResultsWriter,
    environment_of,
    list_runs,
    load_runs,
    load_selection,
    merge_runs,
)


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
    runs = list_runs(args.paths)
    if args.json:
        print(json.dumps(runs, indent=2))
    else:
        console.stdout.print(console.runs_table(runs))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    return print_comparison(
        load_selection(args.baseline),
        load_selection(args.candidate),
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
        console.stdout.print(
            console.comparison_table(table.to_dict("records"), metric, title, hardware)
        )
        if hardware or len(speedups) > 1:
            console.stdout.print(console.speedup_table(speedups.to_dict("records")))
        console.print_failures(failures)
        summary = ", ".join(f"{n} {v}" for v, n in counts.items())
        extra = ", ".join(f"{n} only in {side}" for side, n in only.items() if n)
        console.stdout.print(
            f"{len(table) + len(failures)} cases: {summary}" + (f"; {extra}" if extra else ""),
            soft_wrap=True,
        )
        console.print_lines(console.comparison_notes(table.to_dict("records"), settings))
    return 1 if regressed and fail else 0


def cmd_history(args: argparse.Namespace) -> int:
    found = history.history(load_runs(args.runs), args.metric, args.threshold, args.order)
    counts = history.summary(found)
    if args.json:
        print(json.dumps(history.as_mapping(found), indent=2, default=str))
    else:
        console.stdout.print(console.history_table(found))
        if found.steps:
            console.stdout.print(console.steps_table(found))
        console.stdout.print(
            f"{len(found.runs)} runs, {len(found.series)} cases: "
            f"{counts['regressions']} regressions, "
            f"{counts['improvements']} improvements",
            soft_wrap=True,
        )
    return 1 if counts["regressions"] and args.fail_on_regression else 0


def cmd_report(args: argparse.Namespace) -> int:
    culprits = report.culprits_of(
        _json_document(path, "harness bisect --json") for path in args.bisect
    )
    html = report.render(load_runs(args.runs), args.title, args.order, args.threshold, culprits)
    _make_folder(args.out)
    console.stdout.print(f"report: {report.write(html, args.out)}", soft_wrap=True)
    return 0


def _json_document(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise UsageError(f"{path} is not JSON; give the file {what} wrote") from None


def _make_folder(out: Path) -> None:
    """The folder of ``--out``, where the parser allowed it to be missing (under the
    current folder)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot create the folder of {out}: {exc.strerror}; give --out a writable path"
        ) from None


def cmd_import_asv(args: argparse.Namespace) -> int:
    runs = load_asv_runs(args.directory, registry_of(args), args.commit, args.machine)
    for run in runs:
        header = dataclasses.replace(run.header, command=("harness", *sys.argv[1:]))
        with ResultsWriter(args.out, header) as out:
            for case in run.cases:
                out.write_case(case)
        env = run.header.environment
        console.stdout.print(
            f"{env['git']['commit'][:12]} on {env['hostname']} "
            f"({env['asv_env']}): {len(run.cases)} cases, run {out.run_id}",
            soft_wrap=True,
        )
    console.stdout.print(f"results: {args.out}", soft_wrap=True)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    document = to_pytest_benchmark(load_selection(args.run))
    _make_folder(args.out)
    try:
        args.out.write_text(json.dumps(document, indent=2, default=str))
    except OSError as exc:
        raise UsageError(f"cannot write {args.out}: {exc.strerror}") from None
    console.stdout.print(f"{len(document['benchmarks'])} cases: {args.out}", soft_wrap=True)
    return 0
