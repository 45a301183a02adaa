"""HTML rendering of the report model (Jinja2, autoescaping on, templates as package data)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import jinja2

from chaoshelius.report.charts import (
    ChartView,
    TimeAxis,
    format_number,
    line_chart,
    sparkline,
    state_chart,
    timeline_chart,
    utc,
)
from chaoshelius.report.kpis import RECOVERED_RATIO
from chaoshelius.report.model import KPI_LABELS, RunReport, RunSummary, Series, SeriesSet

KPI_UNITS = {
    "availability_during_fault": "ratio",
    "time_to_fallback_s": "s",
    "time_to_recover_s": "s",
    "worst_p99_s": "s",
    "fault_duration_s": "s",
    "requests_during_fault": "",
    "p99_before_fault_s": "s",
    "p99_during_fault_s": "s",
}


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
    env.filters["utc"] = lambda t: "" if t is None else utc(float(t))
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True, default=str)
    env.filters["num"] = lambda v, unit="": format_number(float(v), unit)
    return env


def format_value(value: Any) -> str:
    """A measured value as measured: no rounding to an integer, full float precision kept."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def format_kpi(value: float | None, key: str) -> str:
    """KPI display: ratio as a percentage, durations in s (or ms), never integer-rounded."""
    if value is None:
        return "not measured"
    unit = KPI_UNITS.get(key, "")
    if unit == "ratio":
        return f"{value * 100:.6g} %"
    if unit == "s":
        return f"{value * 1000:.6g} ms" if abs(value) < 1 else f"{value:.6g} s"
    return f"{value:.6g}"


def run_charts(report: RunReport) -> tuple[ChartView | None, tuple[ChartView, ...]]:
    """The timeline and the metric charts of a run, on one shared time axis."""
    start, end = report.range_start, report.range_end
    if start is None or end is None:
        return None, ()
    axis = TimeAxis(start - 10.0, end + 10.0, origin=start)
    sets: Mapping[str, SeriesSet] = {s.key: s for s in report.charts}
    windows = report.windows

    def get(key: str) -> tuple[Series, ...]:
        entry = sets.get(key)
        return entry.series if entry else ()

    def queries(*keys: str) -> tuple[str, ...]:
        return tuple(sets[k].query for k in keys if k in sets)

    def named(key: str, label: str) -> list[Series]:
        return [replace(s, label=label) for s in get(key)]

    no_prom = (
        "no data"
        if report.summary.prometheus_error is None
        else "no data: " + (report.summary.prometheus_error)
    )
    charts = [
        line_chart(
            "success_ratio",
            "Client success ratio",
            axis,
            [(s, False) for s in get("client_success_ratio")],
            windows,
            unit="ratio",
            y_min=min(0.95, RECOVERED_RATIO),
            y_max=1.0,
            queries=queries("client_success_ratio"),
            empty_message=no_prom,
        ),
        line_chart(
            "throughput",
            "Client throughput by outcome (requests/s)",
            axis,
            [(s, False) for s in get("client_throughput")],
            windows,
            unit="req/s",
            y_min=0.0,
            queries=queries("client_throughput"),
            empty_message=no_prom,
        ),
        line_chart(
            "latency",
            "Latency p50 / p95 / p99 (client; server p99 dashed)",
            axis,
            [
                *((s, False) for s in named("client_latency_p50", "p50")),
                *((s, False) for s in named("client_latency_p95", "p95")),
                *((s, False) for s in named("client_latency_p99", "p99")),
                *((s, True) for s in named("server_latency_p99", "server p99")),
            ],
            windows,
            unit="s",
            y_min=0.0,
            queries=queries(
                "client_latency_p50",
                "client_latency_p95",
                "client_latency_p99",
                "server_latency_p99",
            ),
            empty_message=no_prom,
        ),
        line_chart(
            "server_throughput",
            "Server responses by status (requests/s)",
            axis,
            [(s, False) for s in get("server_throughput")],
            windows,
            unit="req/s",
            y_min=0.0,
            queries=queries("server_throughput"),
            empty_message=no_prom,
        ),
        state_chart(
            "fallback",
            "Fallback mode per pod (amber: serving the fallback model)",
            axis,
            get("fallback"),
            windows,
            on_color="#f59e0b",
            queries=queries("fallback"),
            empty_message=no_prom,
        ),
        state_chart(
            "mlflow",
            "MLflow up / ready per pod (green: up, red: down)",
            axis,
            [
                *(replace(s, label=f"up {s.label}") for s in get("mlflow_up")),
                *(replace(s, label=f"ready {s.label}") for s in get("mlflow_ready")),
            ],
            windows,
            on_color="#16a34a",
            off_color="#dc2626",
            queries=queries("mlflow_up", "mlflow_ready"),
            empty_message=no_prom,
        ),
        state_chart(
            "alerts",
            "Alerts firing",
            axis,
            get("alerts"),
            windows,
            on_color="#dc2626",
            queries=queries("alerts"),
            empty_message="no alert fired" if report.summary.prometheus_error is None else no_prom,
        ),
        state_chart(
            "faults",
            "Faults active (stack)",
            axis,
            get("fault_active"),
            windows,
            on_color="#b45309",
            queries=queries("fault_active"),
            empty_message=no_prom,
        ),
    ]
    return timeline_chart(axis, report.timeline, windows), tuple(charts)


def render_run(report: RunReport) -> str:
    timeline, charts = run_charts(report)
    kpis = report.summary.kpis.as_dict()
    template = environment().get_template("run.html.j2")
    return template.render(
        r=report,
        s=report.summary,
        kpis=kpis,
        kpi_labels=KPI_LABELS,
        timeline=timeline,
        charts=charts,
        recovered_ratio=RECOVERED_RATIO,
    )


def render_index(
    current: Sequence[RunSummary],
    history: Mapping[str, Sequence[RunSummary]],
    problems: Sequence[str],
    *,
    generated_at: float,
) -> str:
    trends: dict[str, dict[str, str]] = {}
    for key, runs in history.items():
        trends[key] = {
            name: sparkline([getattr(r.kpis, name) for r in runs]) for name in KPI_LABELS
        }
    template = environment().get_template("index.html.j2")
    return template.render(
        current=current,
        history=history,
        trends=trends,
        problems=problems,
        kpi_labels=KPI_LABELS,
        generated_at=generated_at,
    )
