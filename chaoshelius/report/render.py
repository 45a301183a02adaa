"""HTML rendering of the report model (Jinja2, autoescaping on, templates as package data)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import jinja2

from chaoshelius.report.charts import (
    BLACK,
    BLUE,
    GREEN,
    GREY,
    ORANGE,
    PURPLE,
    SKY,
    VERMILLION,
    ChartView,
    Limit,
    TimeAxis,
    format_number,
    line_chart,
    sparkline,
    state_chart,
    timeline_chart,
    utc,
)
from chaoshelius.report.kpis import NEVER_FELL_BACK, RECOVERED_RATIO
from chaoshelius.report.model import (
    KPI_CLOCKS,
    KPI_LABELS,
    KPI_UNITS,
    FaultWindow,
    ProbeResult,
    RunReport,
    RunSummary,
    Series,
    SeriesSet,
    unexpected_counts,
)
from chaoshelius.report.units import describe_limits, format_quantity, format_seconds

AXIS_END_MARGIN_S = 10.0  # the charts start at the run's start and end a little after it

# which hypothesis probes (by provider function) judge the same thing as a KPI
KPI_PROBES: dict[str, tuple[str, ...]] = {
    "availability_during_fault": ("client_success_ratio",),
    "time_to_fallback_s": ("fallback_engaged_within",),
    "time_to_recover_s": ("fallback_cleared_within", "replicas_recovered_within"),
    "worst_p99_s": ("latency_p99_ratio",),
}

OUTCOME_COLORS = {"success": GREEN, "failure": VERMILLION}
LATENCY_COLORS = {"p50": SKY, "p95": ORANGE, "p99": PURPLE, "server p99": BLACK}

SCORE_EXPLAINED = (
    "Resilience score: the share of the steady-state hypothesis's probes that held after the "
    "method, weighted by probe (weight 1 unless the experiment's `chaoshelius` extension sets "
    "`probe_weights`), like Litmus' resilience score. A probe that measured no data, raised or "
    "never ran counts as failed: missing data never counts as a pass."
)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("chaoshelius.report", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["value"] = format_value
    env.filters["kpi"] = format_kpi
    env.filters["kpi_number"] = lambda v, key: format_quantity(
        v, KPI_UNITS.get(key, ""), with_unit=False
    )
    env.filters["utc"] = lambda t: "" if t is None else utc(float(t))
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True, default=str)
    env.filters["num"] = lambda v, unit="": format_number(float(v), unit)
    env.filters["seconds"] = format_seconds
    env.filters["ms"] = lambda v: "—" if v is None else format_quantity(float(v) / 1000, "ms")
    env.filters["rps"] = lambda v: "—" if v is None else format_quantity(float(v), "req/s")
    env.filters["probe_value"] = format_probe_value
    env.filters["limits"] = format_limits
    env.filters["score"] = format_score
    return env


def format_value(value: Any) -> str:
    """A raw value (booleans, strings, numbers) for the places that show one as it is."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def format_kpi(value: float | None, key: str, notes: Sequence[str] = ()) -> str:
    """A KPI rounded, in its one unit (model.KPI_UNITS): %, s, ms or req/s."""
    if value is None:
        if key == "time_to_fallback_s" and any(NEVER_FELL_BACK in n for n in notes):
            return "never (no pod fell back)"
        return "not measured"
    return format_quantity(value, KPI_UNITS.get(key, ""))


def format_score(value: float | None) -> str:
    return "not judged" if value is None else f"{value:.0f}"


def format_probe_value(probe: ProbeResult) -> str:
    if probe.value is None:
        return "no data"
    return format_quantity(probe.value, probe.unit)


def format_limits(probe: ProbeResult) -> str:
    """A probe's own threshold in words with units, e.g. `success ≥ 99 %, ≥ 20 requests`."""
    if not probe.limits:
        return "—" if probe.threshold is None else format_value(probe.threshold)
    return describe_limits(probe.limits)


@dataclass(frozen=True)
class KpiCard:
    key: str
    label: str
    value: str
    raw: float | None
    clock: str
    judged_by: str | None  # the hypothesis probe that judges the same thing, with its limit


def kpi_cards(report: RunReport) -> tuple[KpiCard, ...]:
    kpis = report.summary.kpis
    cards: list[KpiCard] = []
    for key, label in KPI_LABELS.items():
        raw = getattr(kpis, key)
        cards.append(
            KpiCard(
                key,
                label,
                format_kpi(raw, key, kpis.notes),
                raw,
                KPI_CLOCKS[key],
                _judged_by(report, key),
            )
        )
    return tuple(cards)


def _judged_by(report: RunReport, key: str) -> str | None:
    funcs = KPI_PROBES.get(key, ())
    for row in report.hypothesis:
        probe = row.after
        if probe is None or not probe.structured or probe.func not in funcs:
            continue
        state = "held" if probe.met else "did not hold"
        clock = ""
        if probe.func == "fallback_cleared_within":
            app = (probe.limits or {}).get("after_app_back")
            clock = f", clock from {app} back up" if app else ", clock from the fault's end"
        elif probe.func == "fallback_engaged_within":
            clock = ", clock from the fault's start"
        return (
            f"probe '{row.name}': {format_probe_value(probe)} ({format_limits(probe)}{clock}): "
            f"{state}"
        )
    return None


def slo_limits(report: RunReport) -> dict[str, list[Limit]]:
    """The hypothesis probes' own thresholds, as rules on the charts they concern."""
    limits: dict[str, list[Limit]] = {}
    for row in report.hypothesis:
        probe = row.after
        if probe is None or not probe.structured or not probe.limits:
            continue
        lim = probe.limits
        output: Mapping[str, Any] = (
            probe.raw_output if isinstance(probe.raw_output, Mapping) else {}
        )
        raw_window = output.get("window")
        window: Mapping[str, Any] = raw_window if isinstance(raw_window, Mapping) else {}
        start, end = _num(window.get("started_at")), _num(window.get("ended_at"))
        if probe.func == "client_success_ratio" and _num(lim.get("min_ratio")) is not None:
            ratio = float(lim["min_ratio"])
            label = f"SLO: success ≥ {format_quantity(ratio, '%')} ({row.name})"
            limits.setdefault("success_ratio", []).append(Limit("h", ratio, label))
        elif probe.func == "latency_p99_ratio":
            before = _num(output.get("p99_before_seconds"))
            max_ratio, floor = _num(lim.get("max_ratio")), _num(lim.get("floor_seconds"))
            if before is not None and max_ratio is not None:
                value = max(max_ratio * before, floor or 0.0)
                label = f"p99 limit {format_quantity(value, 'ms')} ({row.name})"
                limits.setdefault("latency", []).append(Limit("h", value, label))
        elif probe.func == "fallback_engaged_within" and start is not None:
            seconds = _num(lim.get("seconds"))
            if seconds is not None:
                label = f"fallback due by here ({row.name}: ≤ {seconds:g} s)"
                limits.setdefault("fallback", []).append(Limit("v", start + seconds, label))
        elif probe.func == "fallback_cleared_within" and end is not None:
            seconds = _num(lim.get("seconds"))
            back = _num(output.get("app_back_after_seconds")) or 0.0
            if seconds is not None:
                label = f"fallback must clear by here ({row.name}: ≤ {seconds:g} s)"
                limits.setdefault("fallback", []).append(Limit("v", end + back + seconds, label))
        elif probe.func == "alert_fired" and start is not None:
            within = _num(lim.get("within_seconds"))
            if within is not None:
                label = f"alert due by here ({row.name}: ≤ {within:g} s)"
                limits.setdefault("alerts", []).append(Limit("v", start + within, label))
    return limits


def firing_at_start(report: RunReport) -> tuple[str, ...]:
    """Alerts already firing when the run started (left over from before it)."""
    start = report.range_start
    if start is None:
        return ()
    sets = {s.key: s for s in report.charts}
    entry = sets.get("alerts")
    names: list[str] = []
    for s in entry.series if entry else ():
        before = [p for p in s.points if p.t <= start]
        # firing at the start: its last sample before the start is 1 and recent (a series that
        # stopped a few steps earlier had resolved: Prometheus drops a resolved alert)
        if before and before[-1].v >= 1.0 and start - before[-1].t <= 2 * _spacing(s):
            names.append(s.label)
    return tuple(names)


def _spacing(series: Series) -> float:
    times = [p.t for p in series.points]
    deltas = sorted(b - a for a, b in zip(times, times[1:], strict=False))
    return deltas[len(deltas) // 2] if deltas else 1.0


def _status_color(label: str) -> str:
    return {"2": GREEN, "4": ORANGE, "5": VERMILLION}.get(label[:1], BLUE)


def _solid(label: str) -> bool:
    return False


def _dashed(label: str) -> bool:
    return True


@dataclass(frozen=True)
class _Source:
    """One query's series in a chart: relabelled (`label` replaces, `prefix` prepends) and
    drawn dashed when `dashed` says so of its label."""

    key: str
    label: str | None = None
    prefix: str = ""
    dashed: Callable[[str], bool] = _solid


@dataclass(frozen=True)
class _Chart:
    """A metric chart of the run report: a line chart (`unit` set) or a state chart."""

    key: str
    title: str
    sources: tuple[_Source, ...]
    unit: str | None = None  # None: a state chart (one bar row per series)
    y_min: float | None = None
    y_max: float | None = None
    colors: Mapping[str, str] | Callable[[str], str] | None = None  # by series label
    on_color: str = VERMILLION
    off_color: str = GREY
    limits: str | None = None  # which of slo_limits() it draws
    marks_early: bool = False  # alerts already firing at the start: "* name", noted in the title
    quiet: str | None = None  # what it says when Prometheus answered with no series


RUN_CHARTS: tuple[_Chart, ...] = (
    _Chart(
        "success_ratio",
        "Client success ratio (SLO line: the hypothesis probe's own threshold)",
        (_Source("client_success_ratio", "client success ratio"),),
        unit="ratio",
        y_min=min(0.95, RECOVERED_RATIO),
        y_max=1.0,
        colors={"client success ratio": BLUE},
        limits="success_ratio",
    ),
    _Chart(
        "throughput",
        "Client throughput by outcome (requests/s; green success, vermillion dashed failure)",
        (_Source("client_throughput", dashed=lambda label: label == "failure"),),
        unit="req/s",
        y_min=0.0,
        colors=OUTCOME_COLORS,
    ),
    _Chart(
        "latency",
        "Latency p50 / p95 / p99 (client; server p99 dashed)",
        (
            _Source("client_latency_p50", "p50"),
            _Source("client_latency_p95", "p95"),
            _Source("client_latency_p99", "p99"),
            _Source("server_latency_p99", "server p99", dashed=_dashed),
        ),
        unit="s",
        y_min=0.0,
        colors=LATENCY_COLORS,
        limits="latency",
    ),
    _Chart(
        "server_throughput",
        "Server responses by status (requests/s; 2xx green, 4xx orange, 5xx vermillion)",
        (_Source("server_throughput", dashed=lambda label: label.startswith("5")),),
        unit="req/s",
        y_min=0.0,
        colors=_status_color,
    ),
    _Chart(
        "fallback",
        "Fallback mode per pod (orange: serving the fallback model)",
        (_Source("fallback"),),
        on_color=ORANGE,
        limits="fallback",
    ),
    _Chart(
        "mlflow",
        "MLflow up / ready per pod (green: up, vermillion: down)",
        (_Source("mlflow_up", prefix="up "), _Source("mlflow_ready", prefix="ready ")),
        on_color=GREEN,
        off_color=VERMILLION,
    ),
    _Chart(
        "alerts",
        "Alerts firing",
        (_Source("alerts"),),
        on_color=VERMILLION,
        limits="alerts",
        marks_early=True,
        quiet="no alert fired",
    ),
    _Chart("faults", "Faults active (stack)", (_Source("fault_active"),), on_color=PURPLE),
)
EARLY_ALERTS_NOTE = " (* already firing when the run started: left over from before it)"


def run_charts(report: RunReport) -> tuple[ChartView | None, tuple[ChartView, ...]]:
    """The timeline and the metric charts (RUN_CHARTS) of a run, on one time axis from the
    run's start."""
    start, end = report.range_start, report.range_end
    if start is None or end is None:
        return None, ()
    axis = TimeAxis(start, end + AXIS_END_MARGIN_S, origin=start)
    sets: Mapping[str, SeriesSet] = {s.key: s for s in report.charts}
    limits = slo_limits(report)
    early = set(firing_at_start(report))
    error = report.summary.prometheus_error
    no_prom = "no data" if error is None else "no data: " + error
    charts = tuple(
        _draw(chart, axis, report.windows, sets, limits, early, no_prom, error is None)
        for chart in RUN_CHARTS
    )
    return timeline_chart(axis, report.timeline, report.windows), charts


def _draw(
    chart: _Chart,
    axis: TimeAxis,
    windows: Sequence[FaultWindow],
    sets: Mapping[str, SeriesSet],
    limits: Mapping[str, Sequence[Limit]],
    early: set[str],
    no_prom: str,
    answered: bool,
) -> ChartView:
    """One chart of RUN_CHARTS from the run's series sets."""
    pairs: list[tuple[Series, bool]] = []
    for source in chart.sources:
        entry = sets.get(source.key)
        for s in entry.series if entry else ():
            label = source.prefix + (s.label if source.label is None else source.label)
            if chart.marks_early and s.label in early:
                label = f"* {s.label}"
            relabelled = s if label == s.label else replace(s, label=label)
            pairs.append((relabelled, source.dashed(s.label)))
    title = chart.title + (EARLY_ALERTS_NOTE if chart.marks_early and early else "")
    queries = tuple(sets[c.key].query for c in chart.sources if c.key in sets)
    empty = chart.quiet if chart.quiet is not None and answered else no_prom
    drawn_limits = limits.get(chart.limits, ()) if chart.limits else ()
    if chart.unit is None:
        return state_chart(
            chart.key,
            title,
            axis,
            [s for s, _ in pairs],
            windows,
            on_color=chart.on_color,
            off_color=chart.off_color,
            queries=queries,
            empty_message=empty,
            limits=drawn_limits,
        )
    colors = chart.colors
    if callable(colors):  # by the label each series has
        colors = {s.label: colors(s.label) for s, _ in pairs}
    return line_chart(
        chart.key,
        title,
        axis,
        pairs,
        windows,
        unit=chart.unit,
        y_min=chart.y_min,
        y_max=chart.y_max,
        queries=queries,
        empty_message=empty,
        colors=colors,
        limits=drawn_limits,
    )


def render_run(report: RunReport) -> str:
    timeline, charts = run_charts(report)
    kpis = report.summary.kpis.as_dict()
    early = firing_at_start(report)
    warnings = list(report.warnings)
    if early:
        warnings.append(
            f"Alert(s) already firing when the run started: {', '.join(early)}. They were left "
            "over from before this run (e.g. the stack's start-up or an earlier experiment), "
            "not caused by its fault."
        )
    template = environment().get_template("run.html.j2")
    return template.render(
        r=report,
        s=report.summary,
        kpis=kpis,
        cards=kpi_cards(report),
        warnings=warnings,
        timeline=timeline,
        charts=charts,
        recovered_ratio=RECOVERED_RATIO,
        any_during=any(row.during for row in report.hypothesis),
        score_explained=SCORE_EXPLAINED,
    )


@dataclass(frozen=True)
class Trend:
    path: str  # sparkline `d`; "" when fewer than two values
    low: str  # the scale: lowest and highest value shown, with the unit
    high: str


INDEX_COLUMNS: dict[str, tuple[str, str]] = {
    # key -> (header, unit shown once in the header)
    "resilience_score": ("Score", "/ 100"),
    **{key: (label, KPI_UNITS[key]) for key, label in KPI_LABELS.items()},
}


def index_value(summary: RunSummary, key: str) -> float | None:
    if key == "resilience_score":
        return summary.resilience_score
    value = getattr(summary.kpis, key)
    return None if value is None else float(value)


def index_cell(value: float | None, key: str) -> str:
    """A number in the column's unit, without the unit (it is in the header)."""
    if value is None:
        return "—"
    if key == "resilience_score":
        return f"{value:.0f}"
    return format_quantity(value, KPI_UNITS.get(key, ""), with_unit=False)


def render_index(
    current: Sequence[RunSummary],
    history: Mapping[str, Sequence[RunSummary]],
    problems: Sequence[str],
    *,
    generated_at: float,
) -> str:
    def columns(runs: Sequence[RunSummary]) -> list[str]:  # no column without a value
        return [k for k in INDEX_COLUMNS if any(index_value(r, k) is not None for r in runs)]

    trends: dict[str, dict[str, Trend]] = {}
    for key, runs in history.items():
        trends[key] = {}
        for name in INDEX_COLUMNS:
            values = [index_value(r, name) for r in runs]
            known = [v for v in values if v is not None]
            trends[key][name] = Trend(
                sparkline(values),
                index_cell(min(known), name) if known else "",
                index_cell(max(known), name) if known else "",
            )
    template = environment().get_template("index.html.j2")
    return template.render(
        current=current,
        history=history,
        trends=trends,
        problems=problems,
        columns=INDEX_COLUMNS,
        current_columns=columns(current),
        history_columns={k: columns(v) for k, v in history.items()},
        value_of=index_value,
        cell=index_cell,
        generated_at=generated_at,
        score_explained=SCORE_EXPLAINED,
        unexpected=unexpected_counts(current),
    )


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
