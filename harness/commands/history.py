"""`harness history` and `harness report`: a case's series of runs, its steps, the HTML report."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from harness import console
from harness.analysis import history, report
from harness.analysis.history import History
from harness.commands.compare import VERDICT_STYLE, metric_value
from harness.commands.files import make_folder
from harness.errors import UsageError
from harness.store.filters import Filters
from harness.store.sources import load_runs


def cmd_history(args: argparse.Namespace) -> int:
    found = history.history(
        load_runs(args.runs, Filters.of_options(args), summary=True),
        args.metric,
        args.threshold,
        args.order,
    )
    counts = history.summary(found)
    if args.json:
        print(json.dumps(history.as_mapping(found), indent=2, default=str))
    else:
        console.stdout.print(history_table(found))
        if found.steps:
            console.stdout.print(steps_table(found))
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
    html = report.render(
        load_runs(args.runs, Filters.of_options(args)),
        args.title,
        args.order,
        args.threshold,
        culprits,
    )
    make_folder(args.out)
    console.stdout.print(f"report: {report.write(html, args.out)}", soft_wrap=True)
    return 0


def _json_document(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise UsageError(f"{path} is not JSON; give the file {what} wrote") from None


_SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 32) -> str:
    """Values as block characters, lowest to highest; long series are averaged into
    ``width`` bins."""
    if not values:
        return ""
    count = min(width, len(values))
    bins = [values[i * len(values) // count : (i + 1) * len(values) // count] for i in range(count)]
    means = [sum(b) / len(b) for b in bins]
    lo, hi = min(means), max(means)
    top = len(_SPARKS) - 1
    return "".join(_SPARKS[round((m - lo) / (hi - lo) * top) if hi > lo else 0] for m in means)


def history_table(found: History) -> Table:
    """Per case: runs, first and last value, a sparkline (higher is larger), and steps."""
    table = Table(
        title=f"{found.metric} over {len(found.runs)} runs ({found.order} order)",
        title_justify="left",
    )
    for column in ("case", "runs", "first", "last", "trend", "steps"):
        table.add_column(
            column,
            justify="right" if column in ("runs", "first", "last") else "left",
            no_wrap=column in ("case", "trend"),
        )
    for series in found.series:
        steps = found.steps_of(series.key)
        marks = Text(", ").join(
            Text.assemble((f"{s.ratio - 1:+.1%}", VERDICT_STYLE[s.verdict]), f" at {s.run.label}")
            for s in steps
        )
        table.add_row(
            series.label,
            str(len(series.points)),
            metric_value(series.values[0], found.metric),
            metric_value(series.values[-1], found.metric),
            sparkline(series.values),
            marks or Text("none", style="dim"),
        )
    return table


def steps_table(found: History) -> Table:
    """Each confirmed step: where, the levels either side, the ratio with its CI, q."""
    from harness.analysis.significance import ALPHA

    table = Table(
        title=f"{len(found.steps)} steps (threshold {found.threshold:.1%}, q <= {ALPHA})",
        title_justify="left",
    )
    for column in (
        "case",
        "from run",
        "to run",
        "before",
        "after",
        "ratio",
        "95% CI",
        "q",
        "verdict",
    ):
        table.add_column(
            column,
            justify="left" if column in ("case", "from run", "to run", "verdict") else "right",
            no_wrap=column == "case",
        )
    for step in found.steps:
        word = "regression" if step.verdict == "slower" else "improvement"
        table.add_row(
            step.case,
            step.previous.label,
            step.run.label,
            metric_value(step.before, found.metric),
            metric_value(step.after, found.metric),
            f"{step.ratio:.3f}",
            f"{step.ci_low:.3f} - {step.ci_high:.3f}",
            f"{step.q_value:.2g}",
            Text(f"{word} ({step.verdict})", style=VERDICT_STYLE[step.verdict]),
        )
    return table
