"""Prometheus for the probes: the harness's one client (chaoshelius.promapi), with its errors
converted to `PrometheusError` here, at this one boundary (an ActivityFailed: chaoslib records a
sentence, and in the after-method hypothesis the run deviates).

`guarded_chaosprometheus_query` offers chaostoolkit-prometheus's own `query` under a hard
deadline for experiments that want its raw output (it has no HTTP timeout of its own).
"""

from __future__ import annotations

import threading
from typing import Any

from chaoshelius.config import HarnessConfig
from chaoshelius.exceptions import PrometheusError
from chaoshelius.promapi import PromAPIError, PrometheusAPI, Sample, Series

__all__ = ["ProbePrometheus", "Sample", "Series", "guarded_chaosprometheus_query", "client"]


class ProbePrometheus:
    """PrometheusAPI whose errors are PrometheusError (ActivityFailed)."""

    def __init__(self, api: PrometheusAPI) -> None:
        self.api = api

    def instant(self, query: str, at: float | None = None) -> list[Sample]:
        try:
            return self.api.instant(query, at)
        except PromAPIError as exc:
            raise PrometheusError(str(exc)) from exc

    def instant_value(self, query: str, at: float | None = None) -> float | None:
        try:
            return self.api.instant_value(query, at)
        except PromAPIError as exc:
            raise PrometheusError(str(exc)) from exc

    def matrix(self, query: str, at: float | None = None) -> list[Series]:
        try:
            return self.api.matrix(query, at)
        except PromAPIError as exc:
            raise PrometheusError(str(exc)) from exc

    def range_series(self, query: str, start: float, end: float, step: float = 1.0) -> list[Series]:
        try:
            return self.api.range_series(query, start, end, step)
        except PromAPIError as exc:
            raise PrometheusError(str(exc)) from exc


def client(config: HarnessConfig) -> ProbePrometheus:
    """The probes' Prometheus for this configuration."""
    return ProbePrometheus(
        PrometheusAPI(config.prometheus_base_url, config.helius_http_timeout_seconds)
    )


def guarded_chaosprometheus_query(
    config: HarnessConfig, query: str, deadline_seconds: float | None = None
) -> dict[str, Any]:
    """`chaosprometheus.probes.query` under a hard deadline (it has no HTTP timeout itself).

    Runs it on a daemon thread; if it has not returned by the deadline the call is abandoned
    (the thread cannot hold the process open) and PrometheusError is raised.
    """
    from chaosprometheus.probes import query as cp_query

    deadline = deadline_seconds or config.helius_http_timeout_seconds
    outcome: dict[str, Any] = {}

    def _run() -> None:
        try:
            outcome["result"] = cp_query(
                query, configuration={"prometheus_base_url": config.prometheus_base_url}
            )
        except Exception as exc:  # noqa: BLE001 - re-raised below, typed, in the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=_run, name="chaosprometheus-query", daemon=True)
    worker.start()
    worker.join(deadline)
    if worker.is_alive():
        raise PrometheusError(
            f"Prometheus at {config.prometheus_base_url} did not answer {query!r} within "
            f"{deadline:g} s; is it hung?"
        )
    if "error" in outcome:
        raise PrometheusError(
            f"Prometheus query {query!r} at {config.prometheus_base_url} failed: {outcome['error']}"
        ) from outcome["error"]
    result: dict[str, Any] = outcome["result"]
    if result.get("status") != "success" or not result.get("data", {}).get("result"):
        raise PrometheusError(f"Prometheus query {query!r} returned no data")
    return result
