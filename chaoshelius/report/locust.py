"""Locust's CSV output (`locust --csv <run_dir>/locust`): stats, failures, history."""

from __future__ import annotations

import csv
from pathlib import Path

from chaoshelius.report.model import LocustFailure, LocustRow, LocustStats, Point, Series

STATS_FILE = "locust_stats.csv"
FAILURES_FILE = "locust_failures.csv"
HISTORY_FILE = "locust_stats_history.csv"


def read_locust(run_dir: Path) -> LocustStats | None:
    """Read the Locust CSVs of a run; None when the run has no `locust_stats.csv`."""
    stats_path = run_dir / STATS_FILE
    if not stats_path.is_file():
        return None
    rows = tuple(_row(r) for r in _read_csv(stats_path))
    failures_path = run_dir / FAILURES_FILE
    failures = tuple(
        LocustFailure(
            method=r.get("Method", ""),
            name=r.get("Name", ""),
            error=r.get("Error", ""),
            occurrences=int(_num(r.get("Occurrences")) or 0),
        )
        for r in (_read_csv(failures_path) if failures_path.is_file() else [])
    )
    history_path = run_dir / HISTORY_FILE
    history = tuple(_read_csv(history_path)) if history_path.is_file() else ()
    return LocustStats(rows=rows, failures=failures, history=history)


def history_series(stats: LocustStats) -> dict[str, tuple[Series, ...]]:
    """Aggregated history rows as series: cumulative requests by outcome, throughput, p99.

    Used when Prometheus has no client-side series (e.g. it was unreachable): the same KPIs
    can then be computed from what Locust itself recorded, at its 1 s resolution.
    """
    total: list[Point] = []
    failed: list[Point] = []
    ok: list[Point] = []
    rps: list[Point] = []
    p99: list[Point] = []
    for row in stats.history:
        if row.get("Name") != "Aggregated":
            continue
        t = _num(row.get("Timestamp"))
        n = _num(row.get("Total Request Count"))
        f = _num(row.get("Total Failure Count"))
        if t is None or n is None or f is None:
            continue
        total.append(Point(t, n))
        failed.append(Point(t, f))
        ok.append(Point(t, n - f))
        r = _num(row.get("Requests/s"))
        if r is not None:
            rps.append(Point(t, r))
        q = _num(row.get("99%"))
        if q is not None:
            p99.append(Point(t, q / 1000.0))
    if not total:
        return {}
    return {
        "client_requests": (
            Series("failure", {"outcome": "failure"}, tuple(failed)),
            Series("success", {"outcome": "success"}, tuple(ok)),
        ),
        "client_throughput": (Series("all (Locust)", {}, tuple(rps)),),
        "client_latency_p99": (Series("p99 (Locust)", {}, tuple(p99)),),
    }


def _row(r: dict[str, str]) -> LocustRow:
    return LocustRow(
        method=r.get("Type", ""),
        name=r.get("Name", ""),
        requests=int(_num(r.get("Request Count")) or 0),
        failures=int(_num(r.get("Failure Count")) or 0),
        median_ms=_num(r.get("Median Response Time")),
        average_ms=_num(r.get("Average Response Time")),
        p95_ms=_num(r.get("95%")),
        p99_ms=_num(r.get("99%")),
        max_ms=_num(r.get("Max Response Time")),
        rps=_num(r.get("Requests/s")),
    )


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [dict(row) for row in csv.DictReader(handle)]


def _num(text: str | None) -> float | None:
    if text is None or text.strip() in ("", "N/A"):
        return None
    try:
        return float(text)
    except ValueError:
        return None
