"""Prometheus HTTP API client with real timeouts; no-data is an error, never a pass.

It reads Prometheus's address from chaostoolkit-prometheus's configuration key,
`prometheus_base_url`, and returns data in the shape of the HTTP API. Why not call
`chaosprometheus.probes.query`/`query_interval` for the window judgments: they pass no HTTP
timeout to `requests` (a hung Prometheus hangs the whole run), and their time handling
(`dateparser` + `maya`) rounds to 0.1 s and raises DeprecationWarnings on Python 3.12.
`guarded_chaosprometheus_query` offers chaosprometheus's own `query` with a hard deadline for
experiments that want its raw output.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import httpx

from chaoshelius.config import HarnessConfig
from chaoshelius.exceptions import PrometheusError

__all__ = [
    "Sample",
    "Series",
    "guarded_chaosprometheus_query",
    "instant",
    "instant_value",
    "range_series",
]


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]


def _get(config: HarnessConfig, path: str, params: dict[str, str]) -> Any:
    base = config.prometheus_base_url.rstrip("/")
    timeout = config.helius_http_timeout_seconds
    # Prometheus's own evaluation timeout, a little under ours, so it answers with an error
    params = {**params, "timeout": f"{int(max(timeout - 0.5, 0.5) * 1000)}ms"}
    try:
        response = httpx.get(f"{base}{path}", params=params, timeout=timeout)
    except httpx.TimeoutException as exc:
        raise PrometheusError(
            f"Prometheus at {base} did not answer within {timeout:g} s "
            f"(query {params.get('query')!r}); is it hung? check prometheus_base_url"
        ) from exc
    except httpx.HTTPError as exc:
        raise PrometheusError(
            f"Prometheus at {base} is unreachable ({exc}); start the stack "
            "(`chaoshelius stack up`) or set prometheus_base_url"
        ) from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
        detail = body.get("error") if isinstance(body, dict) else response.text[:200]
        raise PrometheusError(
            f"Prometheus rejected query {params.get('query')!r}: HTTP {response.status_code} "
            f"{detail}"
        )
    return body["data"]


def instant(config: HarnessConfig, query: str, at: float | None = None) -> list[Sample]:
    """Instant query (at epoch `at`, default now). Empty list when there is no series."""
    params = {"query": query}
    if at is not None:
        params["time"] = f"{at:.3f}"
    data = _get(config, "/api/v1/query", params)
    if data.get("resultType") == "scalar":
        return [Sample({}, float(data["result"][1]))]
    return [
        Sample(dict(item.get("metric", {})), float(item["value"][1]))
        for item in data.get("result", [])
    ]


def instant_value(config: HarnessConfig, query: str, at: float | None = None) -> float | None:
    """The single value of a query that aggregates to one series; None when no data (or NaN)."""
    samples = instant(config, query, at)
    if not samples:
        return None
    if len(samples) > 1:
        raise PrometheusError(
            f"query {query!r} returned {len(samples)} series, expected one; aggregate it"
        )
    value = samples[0].value
    return None if math.isnan(value) else value


def range_series(
    config: HarnessConfig, query: str, start: float, end: float, step: float = 1.0
) -> list[Series]:
    """Range query; one Series per result series, points as (epoch, value)."""
    data = _get(
        config,
        "/api/v1/query_range",
        {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
    )
    return [
        Series(
            dict(item.get("metric", {})),
            [(float(t), float(v)) for t, v in item.get("values", [])],
        )
        for item in data.get("result", [])
    ]


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
