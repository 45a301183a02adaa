"""Prometheus range queries for the report charts, with a timeout on every HTTP call.

The queries are the contract of docs/reports.md: client-side (what users saw) first, server
side and stack state next. Results are stored in `series.json` as Prometheus returned them
(`{"metric": {...}, "values": [[t, "v"], ...]}`) so a report can be rebuilt offline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from chaoshelius.promapi import PromAPIError, PromAPIRejected, PrometheusAPI
from chaoshelius.report.exceptions import PrometheusUnavailable, QueryFailed
from chaoshelius.report.model import Point, Series, SeriesSet
from chaoshelius.stack.ports import StackPorts
from chaoshelius.topology import FALLBACK_GAUGE

# the local stack's Prometheus on the default base port
DEFAULT_PROMETHEUS_URL: Final = f"http://127.0.0.1:{StackPorts().prometheus}"
DEFAULT_TIMEOUT_S: Final = 10.0
MAX_POINTS: Final = 600


@dataclass(frozen=True)
class ChartQuery:
    """One PromQL range query; `{rate}` is replaced by the rate window, e.g. `15s`."""

    key: str
    promql: str
    legend: tuple[str, ...] = ()  # label names that name a series; empty -> the key

    def render(self, rate_window: str) -> str:
        return self.promql.replace("{rate}", rate_window)


_CLIENT_TOTAL = "helius_client_requests_total"
_CLIENT_BUCKET = "helius_client_request_latency_seconds_bucket"
_SERVER_BUCKET = "reco_engine_requests_latency_seconds_bucket"

QUERIES: Final[tuple[ChartQuery, ...]] = (
    ChartQuery(
        "client_success_ratio",
        f'sum(rate({_CLIENT_TOTAL}{{outcome="success"}}[{{rate}}]))'
        f" / sum(rate({_CLIENT_TOTAL}[{{rate}}]))",
    ),
    ChartQuery(
        "client_throughput",
        f"sum by (outcome) (rate({_CLIENT_TOTAL}[{{rate}}]))",
        ("outcome",),
    ),
    # cumulative counts: the KPIs take differences over the fault window from these
    ChartQuery("client_requests", f"sum by (outcome) ({_CLIENT_TOTAL})", ("outcome",)),
    ChartQuery(
        "client_latency_p50",
        f"histogram_quantile(0.5, sum by (le) (rate({_CLIENT_BUCKET}[{{rate}}])))",
    ),
    ChartQuery(
        "client_latency_p95",
        f"histogram_quantile(0.95, sum by (le) (rate({_CLIENT_BUCKET}[{{rate}}])))",
    ),
    ChartQuery(
        "client_latency_p99",
        f"histogram_quantile(0.99, sum by (le) (rate({_CLIENT_BUCKET}[{{rate}}])))",
    ),
    ChartQuery(
        "server_throughput",
        "sum by (status) (rate(reco_engine_requests_total[{rate}]))",
        ("status",),
    ),
    ChartQuery(
        "server_latency_p99",
        f"histogram_quantile(0.99, sum by (le) (rate({_SERVER_BUCKET}[{{rate}}])))",
    ),
    ChartQuery("fallback", f"max by (pod) ({FALLBACK_GAUGE})", ("pod",)),
    ChartQuery("mlflow_up", 'max by (pod) (up{app="mlflow"})', ("pod",)),
    ChartQuery("mlflow_ready", 'max by (pod) (helius_stack_pod_ready{app="mlflow"})', ("pod",)),
    ChartQuery("alerts", 'max by (alertname) (ALERTS{alertstate="firing"})', ("alertname",)),
    ChartQuery(
        "fault_active",
        "max by (kind, target) (helius_stack_fault_active)",
        ("kind", "target"),
    ),
)


def pick_step(start: float, end: float, scrape_s: float = 1.0) -> float:
    """A step that keeps each series under MAX_POINTS and no finer than the scrape interval."""
    span = max(end - start, 1.0)
    return float(max(scrape_s, math.ceil(span / MAX_POINTS)))


def rate_window(step: float) -> str:
    """Rate window: at least 4 scrapes at the local 1-2 s interval, and at least 2 steps."""
    return f"{int(max(10.0, 2 * step))}s"


class PrometheusClient:
    """The report's view of `chaoshelius.promapi.PrometheusAPI` (the harness's one client):
    range queries with a timeout on every call, an unreachable Prometheus as
    PrometheusUnavailable (the report says so) and a rejected query as QueryFailed (the other
    charts still draw)."""

    def __init__(self, base_url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self._api = PrometheusAPI(self.base_url, timeout_s)

    def close(self) -> None:
        """Nothing to release: each call is its own request."""

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self) -> None:
        """Fail fast with one clear error when Prometheus cannot be reached at all."""
        try:
            self._api.buildinfo()
        except PromAPIRejected:
            return  # an API answered (an old one without buildinfo): the queries will tell
        except PromAPIError as exc:
            raise PrometheusUnavailable(
                f"Prometheus at {self.base_url} is unreachable: {exc}"
            ) from exc

    def query_range(
        self, promql: str, start: float, end: float, step: float
    ) -> list[dict[str, Any]]:
        try:
            result = self._api.range_raw(promql, start, end, step)
        except PromAPIRejected as exc:
            raise QueryFailed(str(exc)) from exc
        except PromAPIError as exc:
            raise PrometheusUnavailable(
                f"Prometheus at {self.base_url} is unreachable: {exc}"
            ) from exc
        return [item for item in result if isinstance(item, dict)]


def fetch_series(
    prometheus_url: str,
    start: float,
    end: float,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    queries: Sequence[ChartQuery] = QUERIES,
) -> dict[str, Any]:
    """Run every chart query over [start, end]; return the `series.json` document.

    Raises PrometheusUnavailable when Prometheus cannot be reached; a single rejected query is
    recorded with its error and the others still run.
    """
    step = pick_step(start, end)
    window = rate_window(step)
    doc: dict[str, Any] = {
        "prometheus_url": prometheus_url,
        "fetched_at": time.time(),
        "start": start,
        "end": end,
        "step": step,
        "rate_window": window,
        "error": None,
        "queries": {},
    }
    with PrometheusClient(prometheus_url, timeout_s) as client:
        client.check()
        for query in queries:
            promql = query.render(window)
            entry: dict[str, Any] = {"query": promql, "legend": list(query.legend)}
            try:
                entry["result"] = client.query_range(promql, start, end, step)
                entry["error"] = None
            except QueryFailed as exc:
                entry["result"] = []
                entry["error"] = str(exc)
            doc["queries"][query.key] = entry
    return doc


def unavailable_document(prometheus_url: str, error: str) -> dict[str, Any]:
    """The `series.json` document written when Prometheus could not be reached."""
    return {
        "prometheus_url": prometheus_url,
        "fetched_at": time.time(),
        "error": error,
        "queries": {},
    }


def series_sets(doc: Mapping[str, Any]) -> dict[str, SeriesSet]:
    """Parse a `series.json` document into SeriesSets keyed by query key."""
    sets: dict[str, SeriesSet] = {}
    queries = doc.get("queries")
    if not isinstance(queries, Mapping):
        return sets
    for key, entry in queries.items():
        if not isinstance(entry, Mapping):
            continue
        legend = tuple(str(x) for x in entry.get("legend") or ())
        series: list[Series] = []
        for item in entry.get("result") or ():
            if not isinstance(item, Mapping):
                continue
            metric = {str(k): str(v) for k, v in dict(item.get("metric") or {}).items()}
            points = tuple(_points(item.get("values") or ()))
            label = ", ".join(metric.get(name, "?") for name in legend) if legend else str(key)
            series.append(Series(label=label or str(key), labels=metric, points=points))
        series.sort(key=lambda s: s.label)
        sets[str(key)] = SeriesSet(
            key=str(key),
            query=str(entry.get("query") or ""),
            series=tuple(series),
            error=entry.get("error"),
        )
    return sets


def _points(values: Any) -> list[Point]:
    points: list[Point] = []
    for pair in values:
        try:
            t, v = float(pair[0]), float(pair[1])
        except (TypeError, ValueError, IndexError):
            continue
        if math.isfinite(v):  # NaN: a ratio or quantile with no traffic in the window
            points.append(Point(t, v))
    return points
