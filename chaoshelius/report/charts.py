"""Server-side charts: the geometry of inline SVG, computed here, drawn by the template.

Two kinds: `lines` (values over time, e.g. success ratio, throughput, latency) and `states`
(one row per pod / alert / activity, a bar where the gauge is 1). Every chart shares the run's
time axis and shades the fault windows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from chaoshelius.report.model import FaultWindow, Point, Series, TimelineEvent

WIDTH = 960
LEFT = 150
RIGHT = 16
TOP = 10
LINE_HEIGHT = 190
ROW_HEIGHT = 18
AXIS_HEIGHT = 22
# Okabe & Ito's colour-blind-safe palette; green means good and vermillion bad everywhere
BLACK = "#000000"
ORANGE = "#E69F00"
SKY = "#56B4E9"
GREEN = "#009E73"
YELLOW = "#F0E442"
BLUE = "#0072B2"
VERMILLION = "#D55E00"
PURPLE = "#CC79A7"
GREY = "#d1d5db"
PALETTE = (BLUE, ORANGE, SKY, PURPLE, GREEN, VERMILLION, BLACK, YELLOW)


@dataclass(frozen=True)
class Path:
    d: str
    color: str
    label: str
    dashed: bool = False


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    color: str
    title: str


@dataclass(frozen=True)
class Tick:
    pos: float
    label: str


@dataclass(frozen=True)
class Rule:
    """A limit drawn on a chart: an SLO threshold (horizontal) or a deadline (vertical)."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str
    label_x: float
    label_y: float
    anchor: str  # SVG text-anchor of the label


@dataclass(frozen=True)
class Limit:
    """A probe's limit to draw: `value` on the y axis ("h") or a time on the x axis ("v")."""

    orientation: str  # "h" or "v"
    value: float
    label: str


@dataclass(frozen=True)
class ChartView:
    """Everything the template needs to draw one chart."""

    key: str
    title: str
    kind: str  # lines / states
    width: int
    height: int
    plot_left: float
    plot_top: float
    plot_width: float
    plot_height: float
    paths: tuple[Path, ...]
    bars: tuple[Bar, ...]
    shades: tuple[Bar, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    row_labels: tuple[Tick, ...]
    legend: tuple[Path, ...]
    empty_message: str | None
    queries: tuple[str, ...]
    unit: str
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class TimeAxis:
    start: float
    end: float
    origin: float  # t = 0 on the axis labels (the run's start)

    def x(self, t: float) -> float:
        span = max(self.end - self.start, 1e-9)
        clamped = min(max(t, self.start), self.end)
        return LEFT + (clamped - self.start) / span * (WIDTH - LEFT - RIGHT)

    def ticks(self) -> tuple[Tick, ...]:
        span = max(self.end - self.start, 1.0)
        step = _nice_step(span / 6)
        first = self.origin + math.ceil((self.start - self.origin) / step) * step
        ticks: list[Tick] = []
        t = first
        while t <= self.end + 1e-9:
            ticks.append(Tick(self.x(t), _rel_label(t - self.origin)))
            t += step
        return tuple(ticks)


def line_chart(
    key: str,
    title: str,
    axis: TimeAxis,
    series: Sequence[tuple[Series, bool]],
    windows: Sequence[FaultWindow],
    *,
    unit: str,
    queries: Sequence[str] = (),
    y_min: float | None = None,
    y_max: float | None = None,
    empty_message: str = "no data",
    colors: Mapping[str, str] | None = None,
    limits: Sequence[Limit] = (),
) -> ChartView:
    """Lines over time; `series` pairs each Series with `dashed`; `colors` by series label;
    `limits` are drawn as dashed rules with their label (the y range includes them)."""
    plot_h = LINE_HEIGHT - TOP - AXIS_HEIGHT
    values = [p.v for s, _ in series for p in s.points if axis.start <= p.t <= axis.end]
    if values:
        values += [lim.value for lim in limits if lim.orientation == "h"]
    lo = y_min if y_min is not None else (min(values) if values else 0.0)
    hi = y_max if y_max is not None else (max(values) if values else 1.0)
    if values and y_min is not None:
        lo = min(lo, min(values))
    if values and y_max is not None:
        hi = max(hi, max(values))
    if hi - lo < 1e-12:
        hi = lo + (abs(lo) * 0.1 or 1.0)

    def y(v: float) -> float:
        return TOP + plot_h - (v - lo) / (hi - lo) * plot_h

    paths: list[Path] = []
    for index, (s, dashed) in enumerate(series):
        pts = [p for p in s.points if axis.start <= p.t <= axis.end]
        if not pts:
            continue
        d = " ".join(
            f"{'M' if i == 0 or pts[i].t - pts[i - 1].t > _gap(pts) else 'L'}"
            f"{axis.x(p.t):.1f},{y(p.v):.1f}"
            for i, p in enumerate(pts)
        )
        color = (colors or {}).get(s.label) or PALETTE[index % len(PALETTE)]
        paths.append(Path(d, color, s.label, dashed))
    y_step = _nice_step((hi - lo) / 4)
    y_ticks: list[Tick] = []
    v = math.ceil(lo / y_step) * y_step
    while v <= hi + 1e-12:
        y_ticks.append(Tick(y(v), format_number(v, unit)))
        v += y_step
    return ChartView(
        key=key,
        title=title,
        kind="lines",
        width=WIDTH,
        height=LINE_HEIGHT,
        plot_left=LEFT,
        plot_top=TOP,
        plot_width=WIDTH - LEFT - RIGHT,
        plot_height=plot_h,
        paths=tuple(paths),
        bars=(),
        shades=_shades(axis, windows, TOP, plot_h),
        x_ticks=axis.ticks(),
        y_ticks=tuple(y_ticks),
        row_labels=(),
        legend=tuple(paths),
        empty_message=None if paths else empty_message,
        queries=tuple(queries),
        unit=unit,
        rules=_rules(axis, limits, TOP, plot_h, y if paths else None),
    )


def state_chart(
    key: str,
    title: str,
    axis: TimeAxis,
    series: Sequence[Series],
    windows: Sequence[FaultWindow],
    *,
    on_color: str,
    off_color: str = GREY,
    queries: Sequence[str] = (),
    empty_message: str = "no data",
    limits: Sequence[Limit] = (),
) -> ChartView:
    """One row per series: a coloured bar while the value is >= 1, grey while 0; `limits`
    (vertical only) mark deadlines."""
    rows = [s for s in series if any(axis.start <= p.t <= axis.end for p in s.points)]
    plot_h = max(len(rows), 1) * ROW_HEIGHT
    bars: list[Bar] = []
    labels: list[Tick] = []
    for row, s in enumerate(rows):
        y = TOP + row * ROW_HEIGHT + 3
        labels.append(Tick(TOP + row * ROW_HEIGHT + ROW_HEIGHT / 2 + 4, s.label))
        pts = [p for p in s.points if axis.start <= p.t <= axis.end]
        gap = _gap(pts)
        for i, p in enumerate(pts):
            nxt = pts[i + 1].t if i + 1 < len(pts) and pts[i + 1].t - p.t <= gap else p.t + gap / 2
            color = on_color if p.v >= 1.0 else off_color
            x0, x1 = axis.x(p.t), axis.x(nxt)
            title_text = f"{s.label}: {p.v:g}"
            bars.append(Bar(x0, y, max(x1 - x0, 0.8), ROW_HEIGHT - 6, color, title_text))
    view = _states_view(
        key, title, axis, windows, plot_h, bars, labels, queries, None if rows else empty_message
    )
    return replace(view, rules=_rules(axis, limits, TOP, plot_h, None))


def timeline_chart(
    axis: TimeAxis, events: Sequence[TimelineEvent], windows: Sequence[FaultWindow]
) -> ChartView:
    """Gantt of the method's and rollbacks' activities."""
    rows = [e for e in events if e.started_at is not None]
    plot_h = max(len(rows), 1) * ROW_HEIGHT
    bars: list[Bar] = []
    labels: list[Tick] = []
    colors = {"method": BLUE, "rollback": PURPLE}
    for row, e in enumerate(rows):
        assert e.started_at is not None  # noqa: S101  narrows for mypy: rows are started events
        end = e.ended_at if e.ended_at is not None else axis.end
        x0, x1 = axis.x(e.started_at), axis.x(end)
        color = VERMILLION if e.status == "failed" else colors.get(e.section, "#6b7280")
        y = TOP + row * ROW_HEIGHT + 3
        title = f"{e.section} {e.activity_type} {e.name}: {e.status}, {end - e.started_at:.1f} s"
        bars.append(Bar(x0, y, max(x1 - x0, 2.0), ROW_HEIGHT - 6, color, title))
        prefix = "↺ " if e.section == "rollback" else ""
        labels.append(Tick(TOP + row * ROW_HEIGHT + ROW_HEIGHT / 2 + 4, prefix + e.name))
    return _states_view(
        "timeline",
        "Timeline of the method and rollbacks",
        axis,
        windows,
        plot_h,
        bars,
        labels,
        (),
        None if rows else "no activity ran",
    )


def sparkline(values: Sequence[float | None], width: int = 120, height: int = 28) -> str:
    """SVG path `d` of a small trend line (None values are gaps)."""
    known = [v for v in values if v is not None]
    if len(known) < 2:
        return ""
    lo, hi = min(known), max(known)
    span = hi - lo or 1.0
    step = width / max(len(values) - 1, 1)
    parts: list[str] = []
    pen_up = True
    for i, v in enumerate(values):
        if v is None:
            pen_up = True
            continue
        y = height - 3 - (v - lo) / span * (height - 6)
        parts.append(f"{'M' if pen_up else 'L'}{i * step:.1f},{y:.1f}")
        pen_up = False
    return " ".join(parts)


def format_number(value: float, unit: str = "") -> str:
    """Axis labels: short, with the unit."""
    if unit == "ratio":
        return f"{value * 100:.4g} %"
    if unit == "s":
        return f"{value * 1000:.3g} ms" if abs(value) < 1 else f"{value:.3g} s"
    return f"{value:.3g}"


def utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _states_view(
    key: str,
    title: str,
    axis: TimeAxis,
    windows: Sequence[FaultWindow],
    plot_h: float,
    bars: Sequence[Bar],
    labels: Sequence[Tick],
    queries: Sequence[str],
    empty: str | None,
) -> ChartView:
    return ChartView(
        key=key,
        title=title,
        kind="states",
        width=WIDTH,
        height=int(TOP + plot_h + AXIS_HEIGHT),
        plot_left=LEFT,
        plot_top=TOP,
        plot_width=WIDTH - LEFT - RIGHT,
        plot_height=plot_h,
        paths=(),
        bars=tuple(bars),
        shades=_shades(axis, windows, TOP, plot_h),
        x_ticks=axis.ticks(),
        y_ticks=(),
        row_labels=tuple(labels),
        legend=(),
        empty_message=empty,
        queries=tuple(queries),
        unit="",
    )


def _rules(
    axis: TimeAxis,
    limits: Sequence[Limit],
    top: float,
    height: float,
    y: Callable[[float], float] | None,
) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    x0, x1 = LEFT, WIDTH - RIGHT
    for lim in limits:
        if lim.orientation == "h" and y is not None:
            pos = y(lim.value)
            rules.append(Rule(x0, pos, x1, pos, lim.label, x1 - 4, pos - 4, "end"))
        elif lim.orientation == "v" and axis.start <= lim.value <= axis.end:
            pos = axis.x(lim.value)
            anchor = "end" if pos > (x0 + x1) / 2 else "start"
            label_x = pos - 4 if anchor == "end" else pos + 4
            rules.append(Rule(pos, top, pos, top + height, lim.label, label_x, top + 10, anchor))
    return tuple(rules)


def _shades(
    axis: TimeAxis, windows: Sequence[FaultWindow], top: float, height: float
) -> tuple[Bar, ...]:
    shades: list[Bar] = []
    for w in windows:
        x0, x1 = axis.x(w.started_at), axis.x(w.end_or(axis.end))
        end = "open" if w.ended_at is None else f"{w.ended_at - w.started_at:.1f} s"
        shades.append(
            Bar(x0, top, max(x1 - x0, 1.0), height, "#fde68a", f"{w.kind} {w.target} ({end})")
        )
    return tuple(shades)


def _gap(points: Sequence[Point]) -> float:
    """Largest spacing still drawn as continuous: 3x the median spacing."""
    times = [p.t for p in points]
    if len(times) < 2:
        return 1.0
    deltas = sorted(b - a for a, b in zip(times, times[1:], strict=False))
    return 3 * deltas[len(deltas) // 2]


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    exp = math.floor(math.log10(raw))
    base = raw / 10**exp
    nice = 1 if base <= 1 else 2 if base <= 2 else 5 if base <= 5 else 10
    return float(nice * 10**exp)


def _rel_label(seconds: float) -> str:
    if abs(seconds) >= 120:
        return f"{'+' if seconds >= 0 else '-'}{abs(seconds) / 60:g} min"
    return f"{'+' if seconds >= 0 else '-'}{abs(seconds):g} s"


def chart_lookup(charts: Sequence[ChartView]) -> Mapping[str, ChartView]:
    return {c.key: c for c in charts}
