"""Charts as inline SVG text: no scripts, no files, no fonts to fetch, every string escaped.

Just what the report draws: linear and log scales with round ticks, axes with labels,
and a few marks (lines, dots, boxes, bars, rules). Tooltips are SVG ``<title>``
elements, which browsers show natively, so a chart works with JavaScript off.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from html import escape

# Tableau 10: distinct in colour and in lightness, readable on white.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#b07aa1",
    "#76b7b2",
    "#edc948",
    "#9c755f",
    "#ff9da7",
    "#bab0ac",
)
FONT_SIZE = 12
CHAR_WIDTH = 0.7 * FONT_SIZE  # a generous average advance: capitals and digits are wide
AXIS = "#555"
GRID = "#e6e6e6"

Format = Callable[[float], str]


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def text_width(text: str, size: float = FONT_SIZE) -> float:
    """An estimate, to size margins: SVG cannot measure text before it is shown."""
    return len(text) * CHAR_WIDTH * size / FONT_SIZE


def _round_step(span: float, count: int) -> float:
    raw = span / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


@dataclass(frozen=True)
class Scale:
    """Maps data values in [lo, hi] to pixels in [start, stop], linearly or by logarithm."""

    lo: float
    hi: float
    start: float
    stop: float
    log: bool = False

    @classmethod
    def fit(
        cls,
        values: Iterable[float],
        start: float,
        stop: float,
        log: bool = False,
        zero: bool = False,
        pad: float = 0.05,
    ) -> Scale:
        """A scale covering ``values`` with ``pad`` of the span spare at each end;
        ``zero`` includes 0 (linear only)."""
        data = [v for v in values if math.isfinite(v) and (v > 0 or not log)]
        lo, hi = (min(data), max(data)) if data else (1.0, 10.0)
        if log:
            if hi / lo < 1.001:
                lo, hi = lo / 1.05, hi * 1.05
            spare = (hi / lo) ** pad
            return cls(lo / spare, hi * spare, start, stop, True)
        if zero:
            lo, hi = min(lo, 0.0), max(hi, 0.0)
        if hi == lo:
            half = abs(lo) * 0.05 or 1.0
            lo, hi = lo - half, hi + half
        spare = (hi - lo) * pad
        return cls(lo if zero and lo == 0 else lo - spare, hi + spare, start, stop)

    def __call__(self, value: float) -> float:
        if self.log:
            t = math.log(value / self.lo) / math.log(self.hi / self.lo)
        else:
            t = (value - self.lo) / (self.hi - self.lo)
        return self.start + t * (self.stop - self.start)

    def ticks(self, count: int = 5) -> list[float]:
        """Round values inside the scale: 1-2-5 per decade on a log scale, multiples of
        a round step on a linear one."""
        if self.log and self.hi / self.lo > 3:
            decades = range(math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi)) + 1)
            for mantissas in ((1, 2, 5), (1, 3), (1,)):
                ticks = [
                    m * 10.0**e
                    for e in decades
                    for m in mantissas
                    if self.lo <= m * 10.0**e <= self.hi
                ]
                if len(ticks) <= count + 2:
                    return ticks
            return ticks[:: math.ceil(len(ticks) / count)]
        step = _round_step(self.hi - self.lo, count)
        first = math.ceil(self.lo / step)
        return [i * step for i in range(first, math.floor(self.hi / step) + 1)]


def _tip(tip: str | None) -> str:
    return f"<title>{escape(tip)}</title>" if tip else ""


def line(
    points: Sequence[tuple[float, float]], stroke: str, width: float = 1.5, dash: str | None = None
) -> str:
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<polyline points="{coords}" fill="none" stroke="{stroke}" stroke-width="{width}"{extra}/>'
    )


def rule(
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    stroke: str = AXIS,
    width: float = 1,
    dash: str | None = None,
    tip: str | None = None,
) -> str:
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" '
        f'stroke-width="{width}"{extra}>{_tip(tip)}</line>'
    )


def dot(
    x: float, y: float, fill: str, radius: float = 3, tip: str | None = None, opacity: float = 1
) -> str:
    return (
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{fill}" '
        f'fill-opacity="{opacity}">{_tip(tip)}</circle>'
    )


def rect(
    x: float,
    y: float,
    width: float,
    height: float,
    fill: str,
    stroke: str | None = None,
    tip: str | None = None,
    opacity: float = 1,
) -> str:
    x, width = (x + width, -width) if width < 0 else (x, width)
    edge = f' stroke="{stroke}"' if stroke else ""
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" '
        f'fill="{fill}" fill-opacity="{opacity}"{edge}>{_tip(tip)}</rect>'
    )


def label(
    x: float,
    y: float,
    content: str,
    anchor: str = "start",
    size: float = FONT_SIZE,
    fill: str = "#222",
    rotate: float = 0,
    weight: str = "normal",
) -> str:
    turn = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
        f'fill="{fill}" font-weight="{weight}"{turn}>{escape(content)}</text>'
    )


@dataclass(frozen=True)
class Frame:
    """The plotting area of a chart inside its margins, in pixels."""

    width: float
    height: float
    top: float = 16
    right: float = 20
    bottom: float = 44
    left: float = 64

    @property
    def x_range(self) -> tuple[float, float]:
        return self.left, self.width - self.right

    @property
    def y_range(self) -> tuple[float, float]:
        """Bottom to top: larger values higher up."""
        return self.height - self.bottom, self.top


def axes(
    frame: Frame,
    x: Scale | None,
    y: Scale | None,
    x_title: str = "",
    y_title: str = "",
    x_format: Format = str,
    y_format: Format = str,
    x_ticks: Sequence[float] | None = None,
    y_ticks: Sequence[float] | None = None,
    x_labels: Sequence[str] | None = None,
) -> str:
    """Grid lines, tick labels and axis titles; ``x_labels`` name ``x_ticks`` directly."""
    parts = []
    left, right = frame.x_range
    bottom, top = frame.y_range
    if y is not None:
        for value in y_ticks if y_ticks is not None else y.ticks():
            py = y(value)
            parts.append(rule(left, py, right, py, GRID))
            parts.append(label(left - 6, py + 4, y_format(value), "end", 11, AXIS))
        if y_title:
            middle = (top + bottom) / 2
            parts.append(label(14, middle, y_title, "middle", 12, AXIS, rotate=-90))
    if x is not None:
        ticks = list(x_ticks if x_ticks is not None else x.ticks())
        names = list(x_labels) if x_labels is not None else [x_format(t) for t in ticks]
        for value, name in zip(ticks, names):
            px = x(value)
            parts.append(rule(px, top, px, bottom, GRID))
            parts.append(label(px, bottom + 15, name, "middle", 11, AXIS))
        if x_title:
            parts.append(label((left + right) / 2, frame.height - 6, x_title, "middle", 12, AXIS))
    parts.append(rule(left, bottom, right, bottom, AXIS))
    parts.append(rule(left, top, left, bottom, AXIS))
    return "".join(parts)


def svg(frame: Frame, body: Iterable[str], title: str) -> str:
    """The ``<svg>`` element: scales with the page, named for screen readers."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {frame.width:.0f} '
        f'{frame.height:.0f}" width="{frame.width:.0f}" role="img" '
        f'aria-label="{escape(title)}" font-family="system-ui, sans-serif">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )
