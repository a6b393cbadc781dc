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
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text

# Redirected output (files, CI logs) gets wide rows instead of rich's 80 columns. Every
# string is plain text: model names, error messages and file contents are not ours, and
# rich would eat ``[enforce fail at ...]`` as markup or die on ``[/red]``; styled cells are
# built as ``Text`` objects instead.
stdout = Console(
    highlight=False,
    soft_wrap=False,
    markup=False,
    emoji=False,
    width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200,
)


stderr = Console(stderr=True, highlight=False, markup=False, emoji=False)


class Progress:
    """Cases done/total, the current case, elapsed time and ETA on a terminal; plain
    pytest-style lines ("[3/10] name ... ok 3.1 ms") otherwise; nothing when quiet."""

    def __init__(self, total: int, quiet: bool = False):
        self.total = total
        self.quiet = quiet
        self.interactive = sys.stderr.isatty() and not quiet
        self._bar: RichProgress | None = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.interactive:
            self._bar = RichProgress(
                SpinnerColumn(),
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=stderr,
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("starting", total=self.total)
        return self

    def status(self, message: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=message)

    def start(self, index: int, label: str) -> None:
        message = f"[{index + 1}/{self.total}] {label}"
        if self._bar is not None:
            self._bar.update(self._task, description=message)
        elif not self.quiet:
            stderr.print(f"{message} ...", end="", soft_wrap=True)

    def finish(self, outcome: str = "done") -> None:
        if self._bar is not None:
            self._bar.advance(self._task)
        elif not self.quiet:
            stderr.print(f" {outcome}", soft_wrap=True)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def print_failures(failures: Sequence[dict[str, Any]]) -> None:
    """One line per case that has no verdict: which side failed, and how."""
    for failure in failures:
        stdout.print(f"failed: {failure['case']}: {failure['error']}", soft_wrap=True)


def print_lines(lines: Iterable[str | Text]) -> None:
    for line in lines:
        stdout.print(line, soft_wrap=True)
