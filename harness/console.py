"""Terminal output: tables on stdout, progress on stderr, numbers in human units.

Progress goes to stderr so ``harness list --json | jq`` and redirected tables stay
clean; without a terminal (CI logs) progress is one plain line per case.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.check import CheckResult
from harness.plan import Case
from harness.stats import format_seconds

# Redirected output (files, CI logs) gets wide rows instead of rich's 80 columns.
stdout = Console(highlight=False, soft_wrap=False,
                 width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200)
stderr = Console(stderr=True, highlight=False)


def format_count(n: int | None) -> str:
    """3576704 -> 3.58M; the exact figure is in ``--json``."""
    if n is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def format_rate(per_second: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if per_second >= scale:
            return f"{per_second / scale:.3g}{unit}/s"
    return f"{per_second:.3g}/s"


def models_table(rows: Sequence[dict[str, Any]], everywhere: Sequence[str] = ()) -> Table:
    """``everywhere`` names suites of every model, said once in the title, not per row."""
    title = f"{len(rows)} models" + (f" (all also in: {', '.join(everywhere)})"
                                     if everywhere else "")
    table = Table(title=title, title_justify="left")
    for column in ("name", "family", "params", "inputs", "outputs", "suites", "plugin"):
        table.add_column(column, justify="right" if column == "params" else "left",
                         no_wrap=column in ("name", "params"))
    for row in rows:
        suites = [s for s in row["suites"] if s not in everywhere]
        table.add_row(row["name"], row["family"], format_count(row["params"]),
                      "\n".join(f"{i['name']} {i['shape']}" for i in row["inputs"]),
                      "\n".join(row["outputs"]), ", ".join(suites), row["plugin"])
    return table


def check_table(results: Sequence[CheckResult]) -> Table:
    failed = sum(not r.ok for r in results)
    table = Table(title=f"{len(results)} models checked, {failed} failed", title_justify="left")
    for column in ("name", "params", "shapes (B=2)", "train", "result"):
        table.add_column(column, justify="right" if column == "params" else "left")
    for r in results:
        shapes = "\n".join(str(s) for s in (r.observed or r.expected))
        verdict = "[green]ok[/]" if r.ok else "[red]FAIL[/]"
        table.add_row(r.name, format_count(r.params), shapes, r.training, verdict)
    return table


def results_table(rows: Sequence[tuple[Case, dict[str, Any]]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("model", "B", "dims", "status", "median", "IQR", "95% CI", "throughput", "n"):
        table.add_column(column, justify="left" if column in ("model", "dims", "status")
                         else "right")
    for case, rec in rows:
        dims = " ".join(f"{k}={case.dims[k]}" for k in case.chosen)
        if rec["status"] != "ok":
            table.add_row(rec["model"], str(rec["batch_size"]), dims, f"[red]{rec['status']}[/]",
                          rec["error"] or "", "", "", "", "")
            continue
        lat = rec["latency"]
        table.add_row(rec["model"], str(rec["batch_size"]), dims, "ok",
                      format_seconds(lat["median"]), format_seconds(lat["iqr"]),
                      f"{format_seconds(lat['ci_low'])} - {format_seconds(lat['ci_high'])}",
                      f"{rec['throughput']:,.1f}/s", str(lat["n"]))
    return table


class Progress:
    """Announces each case as it starts; a live bar on a terminal, lines otherwise."""

    def __init__(self, total: int):
        self.total = total
        self.interactive = sys.stderr.isatty()
        self._status = None

    def __enter__(self) -> Progress:
        if self.interactive:
            self._status = stderr.status("starting")
            self._status.__enter__()
        return self

    def start(self, index: int, label: str) -> None:
        message = f"[{index + 1}/{self.total}] {label}"
        if self._status is not None:
            self._status.update(message)
        else:  # like pytest -v: the name now, the outcome on the same line later
            stderr.print(f"{message} ...", end="", soft_wrap=True)

    def finish(self, outcome: str = "done") -> None:
        if self._status is None:
            stderr.print(f" {outcome}", soft_wrap=True, markup=False)

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)


def outcome(record: dict[str, Any]) -> str:
    """One word and a number for a finished case: 'ok 3.75 ms' or 'error: ...'."""
    if record["status"] != "ok":
        return f"{record['status']}: {record['error']}"
    return f"ok {format_seconds(record['latency']['median'])}"


def print_lines(lines: Iterable[str]) -> None:
    for line in lines:
        stdout.print(line, soft_wrap=True)
