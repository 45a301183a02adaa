"""Errors of the report builder; one root class."""

from __future__ import annotations


class ReportError(Exception):
    """Root of the report builder's errors."""


class RunDirectoryError(ReportError):
    """The run directory does not exist or is not a directory."""


class PrometheusUnavailable(ReportError):
    """Prometheus could not be reached (refused, timed out, not Prometheus)."""


class QueryFailed(ReportError):
    """Prometheus answered but rejected one query (bad PromQL, too many points...)."""
