"""Resilience reports: a run's HTML report from its journal, Prometheus and Locust; the index.

Python API for the suite runner (see docs/reports.md):

    from chaoshelius.report import build_run_report, build_index
    build_run_report("reports/runs/<run_id>", "http://127.0.0.1:17090")
    build_index("reports")
"""

from __future__ import annotations

from chaoshelius.report.build import IndexResult, build_index, build_run_report, load_run
from chaoshelius.report.exceptions import PrometheusUnavailable, ReportError, RunDirectoryError
from chaoshelius.report.model import RunReport, RunSummary, Verdict

__all__ = [
    "IndexResult",
    "PrometheusUnavailable",
    "ReportError",
    "RunDirectoryError",
    "RunReport",
    "RunSummary",
    "Verdict",
    "build_index",
    "build_run_report",
    "load_run",
]
