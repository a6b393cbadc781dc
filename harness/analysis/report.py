"""One self-contained HTML file from runs: environments, latency, scaling, comparison, history.

The file needs nothing but a browser: CSS and SVG charts are inline, the only script
is a few lines that filter cases by name, and a content security policy forbids
fetching anything, so it renders the same offline, attached to an issue or archived
by CI. Every string from a results file is escaped.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import harness
from harness.analysis import compare, history, significance, svg
from harness.errors import CompareError, ReportError
from harness.measure.stats import format_bytes, format_rate, format_seconds, per_label
from harness.store.results import environment_of
from harness.sweep.identity import CaseKey

MAX_RUNS_PER_BOX = 6  # beyond this, distributions show the first and last run only
HISTORY_MIN_RUNS = 3
MAX_OUTLIER_DOTS = 10  # per end of a box plot
VERDICT_COLOURS = {
    "slower": "#d62728",
    "faster": "#2ca02c",
    "no change": "#9e9e9e",
    "inconclusive": "#e0a526",
}

CULPRIT_COLOUR = "#7b3fa0"

RunKey = tuple[str, str]


@dataclass(frozen=True)
class Culprit:
    """A commit ``harness bisect`` named for a case, to mark on that case's history."""

    identity: tuple[Any, ...]  # model, batch size, device, dtype, compile mode, mode
    case: str
    commit: str
    subject: str
    bad: str  # the commit the bisection started from: the run that showed the change
    ratio: float | None
    ci_low: float | None
    ci_high: float | None

    def run_in(self, runs: Sequence[history.Run]) -> int | None:
        """The run that measured the culprit, else the one that measured the bad commit."""
        for commit in (self.commit, self.bad):
            for index, run in enumerate(runs):
                if run.commit and commit.startswith(run.commit):
                    return index
        return None


_IDENTITY = ("model", "batch_size", "device", "dtype", "compile_mode", "mode")
_HEX = set("0123456789abcdef")


def culprits_of(documents: Iterable[Mapping[str, Any]]) -> list[Culprit]:
    """The culprits in ``harness bisect --json`` documents; anything malformed is left out."""
    found = []
    for document in documents:
        bad = (document.get("bad") or {}).get("commit") if isinstance(document, dict) else None
        for case in document.get("cases", []) if isinstance(document, dict) else []:
            commit = case.get("culprit") if isinstance(case, dict) else None
            if not (isinstance(commit, str) and 7 <= len(commit) <= 64 and set(commit) <= _HEX):
                continue
            numbers = [case.get(k) for k in ("ratio", "ci_low", "ci_high")]
            found.append(
                Culprit(
                    tuple(case.get(k) for k in _IDENTITY),
                    str(case.get("case", ""))[:200],
                    commit,
                    str(case.get("subject") or "")[:200],
                    bad if isinstance(bad, str) else "",
                    *(
                        float(n) if isinstance(n, (int, float)) and math.isfinite(n) else None
                        for n in numbers
                    ),
                )
            )
    return found


def _identity(key: CaseKey) -> tuple[Any, ...]:
    """A history series' case key as bisect's JSON names the case."""
    return key.model, key.batch_size, key.device, key.dtype, key.compile_mode, key.mode


# ---- charts -------------------------------------------------------------------------


def _box(samples: Sequence[float]) -> dict[str, Any]:
    """Quartiles, whiskers at the furthest samples within 1.5 IQR, and the rest."""
    data = np.sort(np.asarray(samples, dtype=float))
    q1, median, q3 = np.percentile(data, [25, 50, 75])
    reach = 1.5 * (q3 - q1)
    inside = data[(data >= q1 - reach) & (data <= q3 + reach)]
    outside = data[(data < q1 - reach) | (data > q3 + reach)]
    low, high = outside[outside < q1], outside[outside > q3]
    return {
        "q1": q1,
        "median": median,
        "q3": q3,
        "low": inside[0],
        "high": inside[-1],
        "outliers": [*low[:MAX_OUTLIER_DOTS], *high[-MAX_OUTLIER_DOTS:]],
        "n": len(data),
    }


def box_chart(
    rows: Sequence[tuple[str, Sequence[tuple[int, str, Sequence[float], str]]]], title: str
) -> str:
    """Horizontal box plots on a log time axis: one group per case, one box per run
    (``(colour index, run name, samples, what a sample is: "per call", "per block of 16")``)."""
    boxes = [(label, [(c, name, _box(s), per) for c, name, s, per in runs]) for label, runs in rows]
    left = max(svg.text_width(label) for label, _ in boxes) + 16
    height = sum(len(runs) * 16 + 10 for _, runs in boxes)
    frame = svg.Frame(860, height + 60, top=10, left=min(left, 360), bottom=44)
    values = [
        v for _, runs in boxes for _, _, b, _ in runs for v in (b["low"], b["high"], *b["outliers"])
    ]
    x = svg.Scale.fit(values, *frame.x_range, log=True)
    body = [svg.axes(frame, x, None, "time per iteration (log scale)", x_format=format_seconds)]
    y = frame.top
    for label, runs in boxes:
        y += 5
        body.append(svg.label(frame.left - 8, y + len(runs) * 8 + 4, label, "end"))
        for index, name, b, per in runs:
            mid, fill = y + 8, svg.colour(index)
            tip = (
                f"{label}, run {name}: median {format_seconds(b['median'])}, IQR ({per}) "
                f"{format_seconds(b['q1'])} - {format_seconds(b['q3'])}, whiskers "
                f"{format_seconds(b['low'])} - {format_seconds(b['high'])}, n={b['n']}"
            )
            body.append(svg.rule(x(b["low"]), mid, x(b["high"]), mid, fill))
            body.append(
                svg.rect(
                    x(b["q1"]),
                    y + 2,
                    max(x(b["q3"]) - x(b["q1"]), 1),
                    12,
                    fill,
                    fill,
                    tip,
                    opacity=0.35,
                )
            )
            body.append(svg.rule(x(b["median"]), y + 2, x(b["median"]), y + 14, fill, 2.5))
            body += [svg.dot(x(v), mid, fill, 1.8, opacity=0.6) for v in b["outliers"]]
            y += 16
        y += 5
    return svg.svg(frame, body, title)


def line_chart(
    lines: Mapping[str, Sequence[tuple[float, float]]],
    title: str,
    y_title: str,
    y_format: Callable[[float], str],
) -> str:
    """Value against batch size, one line per configuration, the y axis from zero."""
    frame = svg.Frame(560, 300, top=14, left=72, right=16)
    batches = sorted({b for points in lines.values() for b, _ in points})
    log = len(batches) > 1 and batches[-1] / batches[0] >= 4
    x = svg.Scale.fit(batches, *frame.x_range, log=log, pad=0.06)
    y = svg.Scale.fit(
        [v for points in lines.values() for _, v in points], *frame.y_range, zero=True
    )
    ticks = batches if len(batches) <= 12 else x.ticks()
    body = [
        svg.axes(
            frame,
            x,
            y,
            "batch size" + (" (log scale)" if log else ""),
            y_title,
            x_format=lambda b: f"{b:g}",
            y_format=y_format,
            x_ticks=ticks,
        )
    ]
    for index, (name, points) in enumerate(lines.items()):
        points = sorted(points)
        body.append(svg.line([(x(b), y(v)) for b, v in points], svg.colour(index), 2))
        body += [
            svg.dot(x(b), y(v), svg.colour(index), 3.5, f"{name}, B={b:g}: {y_format(v)}")
            for b, v in points
        ]
    return svg.svg(frame, body, title)


def speedup_chart(rows: Sequence[Mapping[str, Any]], threshold: float, title: str) -> str:
    """Candidate's speedup over baseline per case (>1 faster), log scale around 1, with
    the 95 % interval and the threshold band, coloured by verdict."""
    left = max(svg.text_width(r["case"]) for r in rows) + 16
    frame = svg.Frame(860, len(rows) * 20 + 64, top=10, left=min(left, 420), right=70)
    spans = [v for r in rows for v in (r["speedup"], r["low"], r["high"]) if pd.notna(v)]
    x = svg.Scale.fit([*spans, 1 + threshold, 1 / (1 + threshold)], *frame.x_range, log=True)
    bottom, top = frame.y_range
    body = [
        svg.axes(
            frame,
            x,
            None,
            "speedup of the last run over the first (log scale; >1 faster)",
            x_format=lambda v: f"{v:.3g}x",
        ),
        svg.rect(
            x(1 / (1 + threshold)),
            top,
            x(1 + threshold) - x(1 / (1 + threshold)),
            bottom - top,
            "#f2f2f2",
            tip=f"within the {threshold:.0%} threshold",
        ),
        svg.rule(x(1), top, x(1), bottom, svg.AXIS),
    ]
    for i, r in enumerate(rows):
        y0 = top + 6 + i * 20
        fill = VERDICT_COLOURS[r["verdict"]]
        ci = f", 95% CI {r['low']:.3f}x - {r['high']:.3f}x" if pd.notna(r["low"]) else ""
        tip = f"{r['case']}: {r['speedup']:.3f}x{ci}, {r['verdict']}"
        body.append(svg.label(frame.left - 8, y0 + 11, r["case"], "end"))
        body.append(svg.rect(x(1), y0 + 2, x(r["speedup"]) - x(1), 12, fill, tip=tip, opacity=0.8))
        if pd.notna(r["low"]):
            body.append(svg.rule(x(r["low"]), y0 + 8, x(r["high"]), y0 + 8, "#333", 1.2))
        body.append(svg.label(frame.width - 4, y0 + 11, f"{r['speedup']:.3f}x", "end", 11, "#333"))
    return svg.svg(frame, body, title)


def history_chart(
    series: history.Series,
    steps: Sequence[history.Step],
    runs: Sequence[history.Run],
    order: str,
    title: str,
    culprits: Sequence[Culprit] = (),
) -> str:
    """Median per run with its IQR, the fitted levels, the steps and bisected culprits."""
    frame = svg.Frame(620, 250, top=22, left=72, right=16, bottom=48)
    position = {run.key: i for i, run in enumerate(runs)}
    xs = [position[p.run.key] for p in series.points]
    quartiles = [np.percentile(p.pooled, [25, 75]) for p in series.points]
    x = svg.Scale(-0.5, len(runs) - 0.5, *frame.x_range)
    y = svg.Scale.fit(
        [v for q in quartiles for v in q] + series.values, *frame.y_range, log=True, pad=0.08
    )
    every = max(1, math.ceil(len(runs) / 8))
    ticks = list(range(0, len(runs), every))
    body = [
        svg.axes(
            frame,
            x,
            y,
            f"run, in {order} order",
            "median per iteration",
            y_format=format_seconds,
            x_ticks=ticks,
            x_labels=[runs[i].label for i in ticks],
        )
    ]
    cuts = [s.index for s in steps]
    for start, stop, level in history.levels(series.values, cuts):
        body.append(
            svg.line(
                [
                    (x(xs[start]) - 0.3 * (x(1) - x(0)), y(level)),
                    (x(xs[stop - 1]) + 0.3 * (x(1) - x(0)), y(level)),
                ],
                "#888",
                2,
                "5 3",
            )
        )
    for step in steps:
        at = (xs[step.index - 1] + xs[step.index]) / 2
        fill = VERDICT_COLOURS[step.verdict]
        bottom, top = frame.y_range
        change = f"{step.ratio - 1:+.1%}"
        body.append(
            svg.rule(
                x(at),
                top,
                x(at),
                bottom,
                fill,
                2,
                "4 3",
                f"{step.verdict} {change} at {step.run.label} (95% CI "
                f"{step.ci_low - 1:+.1%} to {step.ci_high - 1:+.1%}, "
                f"q={step.q_value:.2g})",
            )
        )
        body.append(svg.label(x(at), top - 8, change, "middle", 11, fill, weight="bold"))
    for culprit in culprits:
        index = culprit.run_in(runs)
        if index is None:
            continue
        bottom, top = frame.y_range
        ratio = f" {culprit.ratio:.3f}" if culprit.ratio else ""
        body.append(
            svg.rule(
                x(index),
                top,
                x(index),
                bottom,
                CULPRIT_COLOUR,
                1.5,
                "1 3",
                f"culprit {culprit.commit[:10]} {culprit.subject}{ratio} (harness bisect)",
            )
        )
        body.append(
            svg.label(
                x(index), bottom - 4, f"culprit {culprit.commit[:7]}", "middle", 10, CULPRIT_COLOUR
            )
        )
    for px, point, (q1, q3) in zip(xs, series.points, quartiles):
        tip = (
            f"{point.run.label} ({point.run.run_id}): median "
            f"{format_seconds(point.value)}, IQR{f' ({point.per})' if point.per else ''} "
            f"{format_seconds(q1)} - "
            f"{format_seconds(q3)}"
        )
        body.append(svg.rule(x(px), y(q1), x(px), y(q3), svg.PALETTE[0], 1.5))
        body.append(svg.dot(x(px), y(point.value), svg.PALETTE[0], 3.2, tip))
    return svg.svg(frame, body, title)


# ---- sections -----------------------------------------------------------------------


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    row_attributes: Iterable[str] | None = None,
) -> str:
    """An HTML table; cells are HTML already (escaped by the caller)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    attributes = row_attributes or itertools.repeat("")
    body = "".join(
        f"<tr{a}>{''.join(f'<td>{c}</td>' for c in row)}</tr>" for row, a in zip(rows, attributes)
    )
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _swatch(index: int) -> str:
    return f'<span class="swatch" style="background:{svg.colour(index)}"></span>'


def _legend(entries: Iterable[tuple[str, str]]) -> str:
    items = "".join(
        f'<span><span class="swatch" style="background:{c}"></span>{escape(n)}</span>'
        for n, c in entries
    )
    return f'<div class="legend">{items}</div>'


def _figure(content: str, caption: str, cases: Iterable[str], legend: str = "") -> str:
    names = escape(" ".join(cases).lower())
    return (
        f'<figure data-case="{names}"><figcaption>{escape(caption)}</figcaption>'
        f"{content}{legend}</figure>"
    )


def _section(anchor: str, heading: str, intro: str, content: str) -> str:
    return (
        f'<section id="{anchor}"><h2>{escape(heading)}</h2><p class="intro">{intro}</p>'
        f"{content}</section>"
    )


def runs_section(runs: Sequence[history.Run], frames: Mapping[RunKey, pd.DataFrame]) -> str:
    coloured = {i for i, _ in _distributed(runs)}
    rows = []
    for i, run in enumerate(runs):
        part = frames[run.key]
        env = environment_of(part.iloc[0])
        gpus = env.get("gpus")
        gpu_names = ", ".join(g.get("name", "?") for g in gpus) if isinstance(gpus, list) else ""
        statuses = part["status"].value_counts().to_dict()
        commit = (run.commit or "-")[:10] + (" (dirty)" if run.dirty else "")
        threads = f"{env.get('threads', '-')} of {env.get('cpu_count', '-')}"
        swatch = _swatch(i) if i in coloured else '<span class="swatch"></span>'
        cells = [
            f"{swatch}{escape(run.run_id)}",
            escape(run.time or "-"),
            escape(str(run.hostname or "-")),
            f"<code>{escape(commit)}</code>",
            escape(str(env.get("torch_version", "-"))),
            escape(str(env.get("python_version", "-"))),
            escape(str(env.get("cpu_model", "-"))),
            escape(threads),
            escape(gpu_names or "none"),
            escape(", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))),
            f'<span title="{escape(run.file)}">{escape(Path(run.file).name)}</span>',
        ]
        rows.append(cells)
    table = _table(
        [
            "run",
            "time",
            "host",
            "commit",
            "torch",
            "python",
            "CPU",
            "threads",
            "GPUs",
            "cases",
            "file",
        ],
        rows,
    )
    return _section(
        "runs",
        "Runs",
        f"{len(runs)} runs, oldest first. The environment each "
        "run recorded: results are only comparable on like machines and builds.",
        table,
    )


def _cases_by_model(cases: Mapping[CaseKey, Any]) -> dict[str, list[CaseKey]]:
    """Keys per model: float32 eager first, then by configuration and batch size."""
    models: dict[str, list[CaseKey]] = {}
    for key in sorted(
        cases,
        key=lambda k: (
            k.model,
            k.dtype != "float32",
            k.compile_mode != "none",
            str(k[2:]),
            k.batch_size,
        ),
    ):
        models.setdefault(key.model, []).append(key)
    return models


def _pooled_latency(rows: Sequence[Mapping[str, Any]]) -> tuple[list[float], str]:
    """A case's samples over all repeats of a run, and what a sample is ("per call")."""
    per = per_label((r.get("latency.per"), r.get("latency.block_size")) for r in rows)
    return [v for r in rows for v in compare.metric_samples(r, "latency") or []], per


def _distributed(runs: Sequence[history.Run]) -> list[tuple[int, history.Run]]:
    """The runs whose distributions are drawn, with their positions (their colours)."""
    shown = list(enumerate(runs))
    return [shown[0], shown[-1]] if len(shown) > MAX_RUNS_PER_BOX else shown


def latency_section(runs: Sequence[history.Run], frames: Mapping[RunKey, pd.DataFrame]) -> str:
    shown = _distributed(runs)
    latest = {i: compare.latest_cases(frames[run.key]) for i, run in shown}
    every = {key for cases in latest.values() for key in cases}
    figures = []
    for model, keys in _cases_by_model(dict.fromkeys(every)).items():
        rows = []
        for key in keys:
            boxes = [
                (i, run.label, *pooled)
                for i, run in shown
                if (pooled := _pooled_latency(latest[i].get(key, [])))[0]
            ]
            if boxes:
                rows.append((key.label[len(model) + 1 : -1], boxes))
        if rows:
            labels = [k.label for k in keys]
            figures.append(_figure(box_chart(rows, f"latency of {model}"), model, labels))
    legend = _legend((f"run {run.label}", svg.colour(i)) for i, run in shown)
    which = (
        "the first and the last run"
        if len(runs) > len(shown)
        else "each run"
        if len(shown) > 1
        else "the run"
    )
    intro = (
        f"Per-iteration time of every timed sample (of all repeats), for {which}: the "
        "box spans the quartiles, the thick line is the median, whiskers reach the "
        "furthest sample within 1.5 IQR, and dots are the samples beyond. A sample is "
        "one call where a call is long enough to time alone, else the mean of a block "
        "of calls, whose spread is narrower than the calls': hover for which, and the "
        "numbers."
    )
    return _section("latency", "Latency distributions", escape(intro), legend + "".join(figures))


def _configuration(key: CaseKey, shared_dims: Iterable[tuple[str, Any]] = ()) -> str:
    """A case's name without model and batch size (the line it belongs to), leaving out
    the dimension values every line of the chart shares."""
    dims = [f"{k}={v}" for k, v in key.dims if (k, v) not in set(shared_dims)]
    options = [o for o in key.options if o != key.dtype]
    return " ".join(
        [key.dtype, *(["eager"] if key.compile_mode == "none" else []), *dims, *options]
    )


def _byte_unit(largest: float) -> tuple[str, int]:
    """The binary unit that keeps an axis's numbers round: ticks at 100 MiB, not 95.4."""
    return next(
        (u, f)
        for u, f in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10), ("B", 1))
        if largest >= 2 * f or f == 1
    )


def scaling_section(cases: Mapping[CaseKey, Mapping[str, Any]], metric: str) -> str:
    """Throughput or peak memory against batch size, per model."""
    figures = []
    for model, keys in _cases_by_model(cases).items():
        shared = set.intersection(*(set(k.dims) for k in keys))
        lines: dict[str, list[tuple[float, float]]] = {}
        for key in keys:
            value = compare.metric_value(cases[key], metric)
            if pd.notna(value):
                lines.setdefault(_configuration(key, shared), []).append(
                    (key.batch_size, float(value))
                )
        if not lines:
            continue
        if metric == "throughput":
            chart = line_chart(
                lines,
                f"throughput of {model}",
                "samples per second",
                lambda v: format_rate(v).removesuffix("/s"),
            )
        else:
            unit, scale = _byte_unit(max(v for points in lines.values() for _, v in points))
            lines = {name: [(b, v / scale) for b, v in points] for name, points in lines.items()}
            chart = line_chart(
                lines,
                f"memory added by {model} at its peak",
                f"memory added ({unit})",
                lambda v, scale=scale: format_bytes(round(v * scale)),
            )
        legend = _legend((name, svg.colour(i)) for i, name in enumerate(lines))
        figures.append(_figure(chart, model, [k.label for k in keys], legend))
    if metric == "throughput":
        return _section(
            "throughput",
            "Throughput against batch size",
            "Samples per second (batch size over the median time), one line "
            "per dtype and compile mode, from the latest run of each case.",
            "".join(figures),
        )
    return _section(
        "memory",
        "Memory against batch size",
        "The memory each case added at its peak, from the latest run of each: "
        "on a GPU, CUDA's maximum allocated bytes above those allocated before "
        "the case; on the CPU, how far the process's resident set rose above "
        "its baseline, taken with the runtime warm and before the model was "
        "built (shared libraries' pages left out).",
        "".join(figures) or "<p>No memory was recorded.</p>",
    )


def _verdict_cell(step: history.Step) -> str:
    word = "regression" if step.verdict == "slower" else "improvement"
    return f'<span class="verdict" style="color:{VERDICT_COLOURS[step.verdict]}">{word}</span>'


def comparison_section(
    runs: Sequence[history.Run], frames: Mapping[RunKey, pd.DataFrame], threshold: float
) -> str:
    first, last = runs[0], runs[-1]
    heading = f"Comparison: {last.label} against {first.label}"
    try:
        table = compare.compare(frames[first.key], frames[last.key], "latency", threshold)
    except CompareError as exc:
        return _section("comparison", heading, escape(f"Not comparable: {exc}"), "")
    rows = [
        {
            "case": r["case"],
            "speedup": 1 / r["ratio"],
            "low": 1 / r["ci_high"] if pd.notna(r["ci_high"]) else None,
            "high": 1 / r["ci_low"] if pd.notna(r["ci_low"]) else None,
            "verdict": r["verdict"],
        }
        for r in table.to_dict("records")
    ]
    rows.sort(key=lambda r: r["speedup"])
    counts = compare.summarise(table, "latency")
    summary = ", ".join(f"{n} {v}" for v, n in counts.items())
    geomeans = compare.geomean_speedups(table).to_dict("records")
    geo = _table(
        ["suite", "dtype", "compile", "cases", "geomean speedup"],
        [
            [
                escape(str(g["suite"])),
                escape(g["dtype"]),
                escape(g["compile_mode"]),
                str(g["cases"]),
                f"{g['geomean_speedup']:.3f}x",
            ]
            for g in geomeans
        ],
    )
    legend = _legend((v, c) for v, c in VERDICT_COLOURS.items())
    chart = _figure(
        speedup_chart(rows, threshold, heading),
        f"{len(rows)} cases: {summary}",
        [r["case"] for r in rows],
        legend,
    )
    intro = (
        f"Run {escape(last.run_id)} against run {escape(first.run_id)}, case by case, "
        "as <code>harness compare</code> judges them: the ratio with its 95 % interval "
        "(whiskers; Hodges-Lehmann and Mann-Whitney on the raw samples, or a bootstrap "
        "over processes for runs with <code>--repeats</code>), and a verdict "
        f"that needs both significance (q &le; {significance.ALPHA}) and a change of at "
        f"least {threshold:.0%} (the grey band)."
    )
    return _section("comparison", heading, intro, chart + geo)


def history_section(found: history.History, culprits: Sequence[Culprit] = ()) -> str:
    runs = list(found.runs)
    by_case = sorted(found.series, key=lambda s: (not found.steps_of(s), s.label))
    figures = [
        _figure(
            history_chart(
                s,
                found.steps_of(s),
                runs,
                found.order,
                s.label,
                [c for c in culprits if c.identity == _identity(s.key)],
            ),
            s.label + "".join(f" · {st.verdict} {st.ratio - 1:+.1%}" for st in found.steps_of(s)),
            [s.label],
        )
        for s in by_case
        if len(s.points) >= 2
    ]
    rows = [
        [
            escape(s.case),
            f"<code>{escape(s.previous.label)}</code> &rarr; <code>{escape(s.run.label)}</code>",
            escape(format_seconds(s.before)),
            escape(format_seconds(s.after)),
            f"{s.ratio - 1:+.1%}",
            f"{s.ci_low - 1:+.1%} to {s.ci_high - 1:+.1%}",
            f"{s.q_value:.2g}",
            _verdict_cell(s),
        ]
        for s in found.steps
    ]
    table = (
        _table(
            ["case", "between runs", "before", "after", "change", "95% CI", "q", "verdict"],
            rows,
            (f' data-case="{escape(s.case.lower())}"' for s in found.steps),
        )
        if rows
        else "<p>No step found: every case held its level.</p>"
    )
    counts = history.summary(found)
    intro = (
        f"{len(runs)} runs in {found.order} order, {counts['regressions']} regressions "
        f"and {counts['improvements']} improvements. A step is a lasting change of "
        "the median's level (an optimal segmentation with a penalty scaled to each "
        "case's run-to-run noise) whose change of level between the segments is "
        "significant against the runs' own scatter and whose interval reaches "
        f"{found.threshold:.0%}. Dots are medians, bars the "
        "interquartile range, dashed grey lines the fitted levels, coloured dashed "
        "lines the steps."
    )
    return _section("history", "History", escape(intro), table + "".join(figures))


def bisect_section(culprits: Sequence[Culprit], runs: Sequence[history.Run]) -> str:
    def where(culprit: Culprit) -> str:
        index = culprit.run_in(runs)
        if index is None:
            return "not among these runs"
        run = runs[index]
        measured = "it" if culprit.commit.startswith(run.commit or "?") else "the bad commit"
        return f"run {escape(run.label)} ({measured})"

    rows = [
        [
            escape(c.case),
            f"<code>{escape(c.commit[:12])}</code> {escape(c.subject)}",
            "-" if c.ratio is None else f"{c.ratio - 1:+.1%}",
            "-"
            if c.ci_low is None or c.ci_high is None
            else f"{c.ci_low - 1:+.1%} to {c.ci_high - 1:+.1%}",
            where(c),
        ]
        for c in culprits
    ]
    intro = (
        "The commits harness bisect named as the ones that made these cases slower, "
        "timed against their parents (98 % confidence sequence). Each is marked with a "
        "dotted purple line on its case's history: at the run of that commit, else at "
        "the run of the bisection's bad commit."
    )
    return _section(
        "bisect",
        "Culprits",
        escape(intro),
        _table(
            ["case", "culprit", "change", "98% CI", "marked at"],
            rows,
            (f' data-case="{escape(c.case.lower())}"' for c in culprits),
        ),
    )


# ---- the page -----------------------------------------------------------------------

_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       margin: 0; background: #fafafa; }
header { background: #1f2d3d; color: #fff; padding: 20px 32px 14px; }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; }
header p { margin: 0; color: #c8d3df; }
nav { display: flex; gap: 16px; flex-wrap: wrap; align-items: center; margin-top: 12px; }
nav a { color: #fff; text-decoration: none; border-bottom: 1px solid #6b87a6; }
nav input { margin-left: auto; padding: 4px 8px; border-radius: 4px; border: 0; width: 220px; }
main { padding: 8px 32px 32px; max-width: 1800px; }
section { background: #fff; border: 1px solid #e3e3e3; border-radius: 6px; padding: 4px 20px 16px;
          margin: 18px 0; }
h2 { font-size: 18px; font-weight: 600; margin: 14px 0 4px; }
p.intro { color: #555; max-width: 900px; margin: 0 0 12px; }
figure { margin: 14px 0; display: inline-block; vertical-align: top; max-width: 100%; }
figcaption { font-weight: 600; margin-bottom: 2px; }
svg { max-width: 100%; height: auto; display: block; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; color: #444;
          margin: 4px 0 0; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
          margin-right: 5px; vertical-align: baseline; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 10px; }
th, td { padding: 4px 10px; text-align: left; border-bottom: 1px solid #eee; white-space: nowrap; }
th { background: #f3f5f7; font-weight: 600; }
tbody tr:nth-child(even) { background: #fbfbfb; }
code { font-size: 12px; }
.verdict { font-weight: 600; }
[hidden] { display: none !important; }
footer { color: #888; font-size: 12px; padding: 0 32px 24px; }
"""

# First in <head>: records any script error on <html>, where a headless check reads it.
_ERRORS_JS = (
    "window.addEventListener('error',function(e){var d=document.documentElement;"
    "d.setAttribute('data-errors',(d.getAttribute('data-errors')||'')+e.message+';');"
    "});"
)

_FILTER_JS = """
(function () {
  var box = document.getElementById('filter');
  function apply() {
    var query = box.value.trim().toLowerCase();
    document.querySelectorAll('[data-case]').forEach(function (el) {
      el.hidden = query !== '' && el.getAttribute('data-case').indexOf(query) < 0;
    });
  }
  box.addEventListener('input', apply);
  var linked = /^#filter=(.*)$/.exec(location.hash);  // a link can carry a filter
  if (linked) box.value = decodeURIComponent(linked[1]);
  apply();
  document.documentElement.setAttribute('data-ready', '1');
})();
"""

_POLICY = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def render(
    frame: pd.DataFrame,
    title: str = "harness report",
    order: str = "time",
    threshold: float = compare.DEFAULT_THRESHOLD,
    culprits: Sequence[Culprit] = (),
) -> str:
    """The report's HTML for every run in ``frame`` (as ``results.load`` gives it), with
    the ``culprits`` of bisections marked."""
    found = history.history(frame, "latency", threshold, order)
    runs = list(found.runs)
    frames = {key: part for key, part in frame.groupby(["file", "run_id"], sort=False)}
    ordered = pd.concat([frames[r.key] for r in runs], ignore_index=True)
    latest = compare.latest_cases(ordered)
    sections = [
        runs_section(runs, frames),
        latency_section(runs, frames),
        scaling_section(latest, "throughput"),
        scaling_section(latest, "memory"),
    ]
    if len(runs) >= 2:
        sections.append(comparison_section(runs, frames, threshold))
    if culprits:
        sections.append(bisect_section(culprits, runs))
    if len(runs) >= HISTORY_MIN_RUNS:
        sections.append(history_section(found, culprits))
    anchors = [
        (a, n)
        for a, n in (
            ("runs", "Runs"),
            ("latency", "Latency"),
            ("throughput", "Throughput"),
            ("memory", "Memory"),
            ("comparison", "Comparison"),
            ("bisect", "Culprits"),
            ("history", "History"),
        )
        if f'<section id="{a}">' in "".join(sections)
    ]
    nav = "".join(f'<a href="#{a}">{n}</a>' for a, n in anchors)
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    ok = sum(frame["status"] == "ok")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_POLICY}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<script>{_ERRORS_JS}</script>
<title>{escape(title)}</title>
<link rel="icon" href="data:,">
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>{escape(title)}</h1>
<p>{len(runs)} runs, {len(latest)} cases ({ok} successful case records) &middot; generated
{escape(generated)} by harness {escape(harness.__version__)}</p>
<nav>{nav}<input id="filter" type="search" placeholder="filter cases, e.g. mlp[B=8"
aria-label="filter cases by name"></nav>
</header>
<main>
{"".join(sections)}
</main>
<footer>Self-contained: no scripts or files are fetched. Hover a mark for its numbers.</footer>
<script>{_FILTER_JS}</script>
</body>
</html>
"""


def write(text: str, out: Path) -> Path:
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ReportError(
            f"cannot write the report to {out}: {exc.strerror or exc}; "
            "choose a writable path with -o"
        ) from None
    return out
