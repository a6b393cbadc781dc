"""Terminal output: tables on stdout, progress on stderr, numbers in human units.

Progress goes to stderr so ``harness list --json | jq`` and redirected tables stay
clean; without a terminal (CI logs) progress is one plain line per case.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

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
from rich.table import Table
from rich.text import Text

from harness.check import CheckResult
from harness.memory import format_bytes
from harness.plan import Case
from harness.profile import ProfileResult
from harness.record import CaseRecord
from harness.sequential import ALPHA as SEQUENTIAL_ALPHA
from harness.stats import format_seconds, per_label

if TYPE_CHECKING:  # pandas, which compare and history need, is not needed to list models
    from harness.compare import SettingDifference
    from harness.history import History
    from harness.noise import MachineNoise

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
    title = f"{len(rows)} models" + (
        f" (all also in: {', '.join(everywhere)})" if everywhere else ""
    )
    table = Table(title=title, title_justify="left")
    for column in ("name", "family", "params", "inputs", "outputs", "suites", "plugin"):
        table.add_column(
            column,
            justify="right" if column == "params" else "left",
            no_wrap=column in ("name", "params"),
        )
    for row in rows:
        suites = [s for s in row["suites"] if s not in everywhere]
        table.add_row(
            row["name"],
            row["family"],
            format_count(row["params"]),
            "\n".join(f"{i['name']} {i['shape']}" for i in row["inputs"]),
            "\n".join(row["outputs"]),
            ", ".join(suites),
            row["plugin"],
        )
    return table


def check_table(results: Sequence[CheckResult]) -> Table:
    failed = sum(not r.ok for r in results)
    table = Table(title=f"{len(results)} models checked, {failed} failed", title_justify="left")
    for column in ("name", "params", "shapes (B=2)", "train", "result"):
        table.add_column(column, justify="right" if column == "params" else "left")
    for r in results:
        shapes = "\n".join(str(s) for s in (r.observed or r.expected or ()))
        verdict = Text("ok", style="green") if r.ok else Text("FAIL", style="red")
        table.add_row(r.name, format_count(r.params), shapes, r.training, verdict)
    return table


MEMORY_COLUMN = "mem added: tensors / RSS"


def _memory(record: CaseRecord) -> str:
    """What a case added at its peak: its tensors' bytes (on CUDA, the allocator's) and
    the rise of the process's resident set, both above the case's baseline."""
    memory = record.memory or {}
    tensors = memory.get("cuda_max_allocated_bytes", memory.get("tensor_peak_bytes"))
    return f"{format_bytes(tensors)} / {format_bytes(memory.get('cpu_peak_rss_bytes'))}"


def _compute(record: CaseRecord) -> str:
    """FLOP/s and the fraction of the calibrated peak; "-" when the FLOPs are unknown,
    "> peak?" for a case above the peak (a calibration problem, not a number)."""
    flops = record.flops or {}
    if not flops.get("per_step"):
        return "-"
    text = format_rate(flops["achieved_per_s"]).replace("/s", "FLOP/s")
    utilisation = flops.get("utilisation")
    if flops.get("peak_exceeded") or (utilisation or 0) > 1:  # files from before the flag
        text += " (> peak?)"
    elif utilisation is not None:
        text += f" ({utilisation:.0%})"
    return text


def _per(record: CaseRecord) -> str:
    """What an ok record's quartiles are of: "per call" or "per block of 16"."""
    latency = record.latency or {}
    return per_label([(latency.get("per"), latency.get("block_size"))])


def results_table(rows: Sequence[tuple[Case, CaseRecord]], title: str) -> Table:
    """Median and CI per call; the IQR's header (or, when the cases differ, each cell)
    says whether it is the spread of calls or of block means."""
    table = Table(title=title, title_justify="left")
    pers = {_per(rec) for _, rec in rows if rec.ok}
    common = pers.pop() if len(pers) == 1 else None
    for column in (
        "case",
        "status",
        "median",
        f"IQR ({common})" if common else "IQR",
        "95% CI",
        "throughput",
        MEMORY_COLUMN,
        "compute (of peak)",
        "vs eager",
        "n",
    ):
        table.add_column(
            column,
            justify="left" if column in ("case", "status") else "right",
            no_wrap=column == "case",
        )
    for case, rec in rows:
        label = (
            case.label
            if rec.batch_size in (None, case.batch_size)
            else (f"{case.label} -> B={rec.batch_size}")
        )
        if not rec.ok or rec.latency is None:
            colour = "yellow" if rec.status == "skipped" else "red"
            table.add_row(label, Text(rec.status, style=colour), rec.error or "", *[""] * 7)
            continue
        lat = rec.latency
        speedup = rec.speedup_vs_eager
        spread = format_seconds(lat["iqr"]) + ("" if common else f" ({_per(rec)})")
        table.add_row(
            label,
            "ok",
            format_seconds(lat["median"]),
            spread,
            f"{format_seconds(lat['ci_low'])} - {format_seconds(lat['ci_high'])}",
            f"{rec.throughput:,.1f}/s" if rec.throughput is not None else "-",
            _memory(rec),
            _compute(rec),
            f"{speedup:.2f}x" if speedup else "",
            str(lat["n"]),
        )
    return table


_VERDICT_STYLE = {
    "slower": "bold red",
    "faster": "green",
    "larger": "bold red",
    "smaller": "green",
    "no change": "dim",
    "inconclusive": "yellow",
}


def _metric_value(value: float | None, metric: str) -> str:
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
            _metric_value(row["baseline"], metric),
            _metric_value(row["candidate"], metric),
            ratio,
            ci,
            _percent(row.get("mde")),
            q,
            Text(row["verdict"], style=_VERDICT_STYLE[row["verdict"]]),
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
                _metric_value(row.get("baseline_memory"), "memory"),
                _metric_value(row.get("candidate_memory"), "memory"),
            ]
        table.add_row(*cells)
    return table


def noise_line(noise: MachineNoise) -> str:
    """A run's machine noise, which ``harness compare`` needs to judge single processes."""
    from harness.noise import MIN_HEARTBEATS

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


def _operators_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(columns[0], overflow="fold")  # a long name wraps, never cut short
    for column in columns[1:]:
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def print_profile(result: ProfileResult, top: int) -> None:
    """The top operators by self time (CPU, and the device's on CUDA) and by the memory they
    allocated (net of what they freed themselves; ranked with their callees, since the
    bytes themselves are allocated by ``aten::empty``), the memory peak, a compiled case's
    graphs, graph breaks and generated kernels, and the files."""
    case, steps = result.case, result.steps
    device = case.device.upper()
    parts: list[Any] = [
        Text.assemble(
            (case.label, "bold"),
            f": {steps} profiled steps of "
            f"{format_seconds(result.step_time)} on average, "
            f"{_plural(result.threads, 'thread')}",
        ),
        _operators_table(
            f"self CPU time, top {top} operators over {steps} steps",
            ("operator", "calls", "self CPU", "self CPU %", "CPU total"),
            (
                (
                    o.name,
                    str(o.calls),
                    format_seconds(o.self_time),
                    _share(o.self_time, result.cpu_time),
                    format_seconds(o.total_time),
                )
                for o in result.top("self_time", top)
            ),
        ),
    ]
    if case.device == "cuda":
        parts.append(
            _operators_table(
                f"self CUDA time, top {top} operators and kernels over {steps} steps",
                ("operator", "calls", "self CUDA", "self CUDA %", "CUDA total"),
                (
                    (
                        o.name,
                        str(o.calls),
                        format_seconds(o.self_device_time),
                        _share(o.self_device_time, result.device_time),
                        format_seconds(o.total_device_time),
                    )
                    for o in result.top("self_device_time", top)
                ),
            )
        )
    parts.append(
        _operators_table(
            f"{device} memory allocated, top {top} operators over {steps} steps",
            ("operator", "calls", "with callees", "self"),
            (
                (o.name, str(o.calls), format_bytes(o.total_memory), format_bytes(o.self_memory))
                for o in result.top("total_memory", top)
            ),
        )
    )
    parts.append(
        f"memory: peak {format_bytes(result.memory_peak)} allocated on "
        f"{case.device} during the profiled steps, above their start "
        f"({result.memory_events} allocator events)"
    )
    notes = result.compile
    if notes is not None:
        parts.append(
            f"compiled with {notes.backend}: {_plural(notes.graphs, 'graph')}, "
            f"{_plural(notes.graph_breaks, 'graph break')}"
        )
        parts += [
            f"  graph break ({count}x): {reason.splitlines()[0][:160]}"
            for reason, count in notes.break_reasons
        ]
        kernels = notes.generated_kernels
        parts.append(
            f"  generated kernels in the profile: {len(kernels)}"
            + (
                f" ({', '.join(kernels[:3])}{', ...' if len(kernels) > 3 else ''})"
                if kernels
                else ""
            )
        )
    parts.append(f"trace (TensorBoard; also opens in ui.perfetto.dev): {result.trace}")
    if result.memory_snapshot:
        parts.append(f"CUDA memory snapshot (pytorch.org/memory_viz): {result.memory_snapshot}")
        parts.append(f"CUDA memory timeline: {result.memory_timeline}")
    for part in parts:  # tables fit the terminal; a line with a path is never broken
        stdout.print(part, soft_wrap=not isinstance(part, Table))


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
            Text.assemble((f"{s.ratio - 1:+.1%}", _VERDICT_STYLE[s.verdict]), f" at {s.run.label}")
            for s in steps
        )
        table.add_row(
            series.label,
            str(len(series.points)),
            _metric_value(series.values[0], found.metric),
            _metric_value(series.values[-1], found.metric),
            sparkline(series.values),
            marks or Text("none", style="dim"),
        )
    return table


def steps_table(found: History) -> Table:
    """Each confirmed step: where, the levels either side, the ratio with its CI, q."""
    from harness.significance import ALPHA

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
            _metric_value(step.before, found.metric),
            _metric_value(step.after, found.metric),
            f"{step.ratio:.3f}",
            f"{step.ci_low:.3f} - {step.ci_high:.3f}",
            f"{step.q_value:.2g}",
            Text(f"{word} ({step.verdict})", style=_VERDICT_STYLE[step.verdict]),
        )
    return table


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


def outcome(record: CaseRecord) -> str:
    """One word and a number for a finished case: 'ok 3.75 ms' or 'error: ...'."""
    if not record.ok or record.median is None:
        return f"{record.status}: {record.error}"
    batch = f" at B={record.batch_size}" if record.batch_search else ""
    return f"ok {format_seconds(record.median)}{batch}"


def print_failures(failures: Sequence[dict[str, Any]]) -> None:
    """One line per case that has no verdict: which side failed, and how."""
    for failure in failures:
        stdout.print(f"failed: {failure['case']}: {failure['error']}", soft_wrap=True)


def print_lines(lines: Iterable[str | Text]) -> None:
    for line in lines:
        stdout.print(line, soft_wrap=True)
