"""The one Prometheus HTTP API client of the harness: probes, report, stack and suite use it.

A leaf module (it needs only httpx), so the report builder, which imports nothing else of the
harness, can use it too. Every call has a client timeout and asks Prometheus for a server-side
evaluation timeout a little shorter, so a slow query answers with an error instead of hanging.
Errors are `PromAPIError` with a sentence that says what to check; each caller converts them to
its own error type at its boundary (probes: `chaoshelius.exceptions.PrometheusError`).

Why not chaostoolkit-prometheus for this: it passes no HTTP timeout to `requests` (a hung
Prometheus hangs the run) and rounds times to 0.1 s through `dateparser`/`maya`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = [
    "PromAPIError",
    "PromAPIRejected",
    "PromAPIUnreachable",
    "PrometheusAPI",
    "Sample",
    "Series",
]


class PromAPIError(Exception):
    """Prometheus is unreachable, hung, or rejected the query."""


class PromAPIUnreachable(PromAPIError):
    """No Prometheus API answered: connection refused, timed out, or not the API at all."""


class PromAPIRejected(PromAPIError):
    """Prometheus answered and refused the query (bad PromQL, evaluation timeout...)."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]


class PrometheusAPI:
    """`/api/v1/query` and `/api/v1/query_range` with real timeouts."""

    def __init__(self, base_url: str, timeout_seconds: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds

    def _get(self, path: str, params: dict[str, str]) -> Any:
        timeout = self.timeout_seconds
        # Prometheus's own evaluation timeout, a little under ours, so it answers with an error
        params = {**params, "timeout": f"{int(max(timeout - 0.5, 0.5) * 1000)}ms"}
        try:
            response = httpx.get(f"{self.base_url}{path}", params=params, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise PromAPIUnreachable(
                f"Prometheus at {self.base_url} did not answer within {timeout:g} s "
                f"(query {params.get('query')!r}); is it hung? check prometheus_base_url"
            ) from exc
        except httpx.HTTPError as exc:
            raise PromAPIUnreachable(
                f"Prometheus at {self.base_url} is unreachable ({exc}); start the stack "
                "(`chaoshelius stack up`) or set prometheus_base_url"
            ) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise PromAPIUnreachable(
                f"{self.base_url} answered HTTP {response.status_code} with no Prometheus API "
                f"JSON ({response.text[:120]!r}); is prometheus_base_url a Prometheus?"
            )
        if response.status_code != 200 or body.get("status") != "success":
            raise PromAPIRejected(
                f"Prometheus rejected query {params.get('query')!r}: HTTP "
                f"{response.status_code} {body.get('error')}"
            )
        return body["data"]

    def buildinfo(self) -> dict[str, Any]:
        """`/api/v1/status/buildinfo`: the cheapest proof that a Prometheus API answers."""
        data: dict[str, Any] = self._get("/api/v1/status/buildinfo", {})
        return data

    def instant(self, query: str, at: float | None = None) -> list[Sample]:
        """Instant query (at epoch `at`, default now). Empty list when there is no series."""
        params = {"query": query}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        if data.get("resultType") == "scalar":
            return [Sample({}, float(data["result"][1]))]
        return [
            Sample(dict(item.get("metric", {})), float(item["value"][1]))
            for item in data.get("result", [])
        ]

    def instant_value(self, query: str, at: float | None = None) -> float | None:
        """The single value of a query that aggregates to one series; None when no data/NaN."""
        samples = self.instant(query, at)
        if not samples:
            return None
        if len(samples) > 1:
            raise PromAPIError(
                f"query {query!r} returned {len(samples)} series, expected one; aggregate it"
            )
        value = samples[0].value
        return None if math.isnan(value) else value

    def matrix(self, query: str, at: float | None = None) -> list[Series]:
        """A range-vector instant query (`metric[30s] @ t`): every raw sample, real scrape
        timestamps, one Series per series."""
        params = {"query": query}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        if data.get("resultType") != "matrix":
            raise PromAPIError(f"query {query!r} is not a range vector selector")
        return [
            Series(
                dict(item.get("metric", {})),
                [(float(t), float(v)) for t, v in item.get("values", [])],
            )
            for item in data.get("result", [])
        ]

    def range_raw(self, query: str, start: float, end: float, step: float = 1.0) -> list[Any]:
        """Range query, the API's own `result` list (`{"metric", "values"}` items)."""
        data = self._get(
            "/api/v1/query_range",
            {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
        )
        result: list[Any] = data.get("result", [])
        return result

    def range_series(self, query: str, start: float, end: float, step: float = 1.0) -> list[Series]:
        """Range query; one Series per result series, points as (epoch, value)."""
        return [
            Series(
                dict(item.get("metric", {})),
                [(float(t), float(v)) for t, v in item.get("values", [])],
            )
            for item in self.range_raw(query, start, end, step)
        ]
