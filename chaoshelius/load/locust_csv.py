"""Locust's CSV output (`locust --csv <dir>/locust --csv-full-history`), read once for the
load's probes and stop_load (chaoshelius.load) and for the report (chaoshelius.report.locust).

Times are in milliseconds, as Locust writes them; "N/A" and empty cells read as None.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

CSV_PREFIX = "locust"
STATS_FILE = "locust_stats.csv"
FAILURES_FILE = "locust_failures.csv"
HISTORY_FILE = "locust_stats_history.csv"
CSV_FILES = (STATS_FILE, FAILURES_FILE, HISTORY_FILE)
AGGREGATED = "Aggregated"  # the Name of the all-requests row


def number(text: str | None) -> float | None:
    """A CSV cell as a number; None when empty, "N/A" or not a number."""
    if text is None or text.strip() in ("", "N/A"):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def read_rows(path: Path) -> list[dict[str, str]] | None:
    """The rows of one CSV as dicts; None when the file does not exist (yet)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return [dict(row) for row in csv.DictReader(handle)]
    except FileNotFoundError:
        return None


def stats_fields(row: dict[str, str]) -> dict[str, Any]:
    """One `locust_stats.csv` row: method, name, requests, failures, rps and the times (ms)."""
    return {
        "method": row.get("Type") or "",
        "name": row.get("Name") or "",
        "requests": int(number(row.get("Request Count")) or 0),
        "failures": int(number(row.get("Failure Count")) or 0),
        "median_ms": number(row.get("Median Response Time")),
        "average_ms": number(row.get("Average Response Time")),
        "p95_ms": number(row.get("95%")),
        "p99_ms": number(row.get("99%")),
        "max_ms": number(row.get("Max Response Time")),
        "rps": number(row.get("Requests/s")),
    }


def failure_fields(row: dict[str, str]) -> dict[str, Any]:
    """One `locust_failures.csv` row: method, name, error, occurrences."""
    return {
        "method": row.get("Method", ""),
        "name": row.get("Name", ""),
        "error": row.get("Error", ""),
        "occurrences": int(number(row.get("Occurrences")) or 0),
    }


def aggregated_totals(row: dict[str, str]) -> tuple[float, float, float] | None:
    """(timestamp, total requests, total failures) of an Aggregated `locust_stats_history.csv`
    row; None for another row or one with a missing number."""
    if row.get("Name") != AGGREGATED:
        return None
    at = number(row.get("Timestamp"))
    requests = number(row.get("Total Request Count"))
    failures = number(row.get("Total Failure Count"))
    if at is None or requests is None or failures is None:
        return None
    return at, requests, failures
