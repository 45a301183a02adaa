"""Locust's CSV output (`locust --csv <run_dir>/locust`): stats, failures, history, as the
report's model (read by chaoshelius.load.locust_csv, the one reader of these files)."""

from __future__ import annotations

from pathlib import Path

from chaoshelius.load import locust_csv
from chaoshelius.load.locust_csv import FAILURES_FILE, HISTORY_FILE, STATS_FILE
from chaoshelius.report.model import LocustFailure, LocustRow, LocustStats, Point, Series

__all__ = ["FAILURES_FILE", "HISTORY_FILE", "STATS_FILE", "history_series", "read_locust"]


def read_locust(run_dir: Path) -> LocustStats | None:
    """Read the Locust CSVs of a run; None when the run has no `locust_stats.csv`."""
    stats = locust_csv.read_rows(run_dir / STATS_FILE)
    if stats is None:
        return None
    return LocustStats(
        rows=tuple(LocustRow(**locust_csv.stats_fields(r)) for r in stats),
        failures=tuple(
            LocustFailure(**locust_csv.failure_fields(r))
            for r in locust_csv.read_rows(run_dir / FAILURES_FILE) or []
        ),
        history=tuple(locust_csv.read_rows(run_dir / HISTORY_FILE) or ()),
    )


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
        totals = locust_csv.aggregated_totals(row)
        if totals is None:
            continue
        t, n, f = totals
        total.append(Point(t, n))
        failed.append(Point(t, f))
        ok.append(Point(t, n - f))
        r = locust_csv.number(row.get("Requests/s"))
        if r is not None:
            rps.append(Point(t, r))
        q = locust_csv.number(row.get("99%"))
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
