"""Errors the CLI turns into one line on stderr, each with its exit code, and the
warnings it shows as one line too."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HarnessError(Exception):
    """A failure the user can fix; the message says what is wrong and how to fix it."""

    exit_code = 1


class UsageError(HarnessError):
    """Bad command-line input: unknown suite or model, bad option value."""

    exit_code = 2


class ShapeError(HarnessError):
    """An invalid shape expression, or dimension values that break a constraint."""


class PluginError(HarnessError):
    """A plugin that cannot be imported, or that returns malformed specs or suites."""


class SuiteError(HarnessError):
    """A suite file that cannot be read or names something that does not exist."""


class ResultsError(HarnessError):
    """A results file that cannot be written or read."""


class CompareError(HarnessError):
    """Two runs that cannot be compared: nothing in common, or mixed schemas."""


class HistoryError(HarnessError):
    """Runs that cannot be made a history: no time or commit to order them by, no
    repository to take the commit order from, or an unknown metric."""


class ReportError(HarnessError):
    """A report that cannot be written."""


class HarnessWarning(UserWarning):
    """Something the user should know that does not stop the command (a damaged line
    skipped); the CLI shows it as one line, ``harness: warning: ...``."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """What an "unknown NAME" message ends with: a near miss among ``choices``
    ("; did you mean 'gan'?"), else nothing."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
