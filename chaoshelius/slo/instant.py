"""Probes of the state now: one instant query against a threshold.

`query_value` judges it and returns the harness's verdict shape; `query` is
chaostoolkit-prometheus's own `query` (its raw API answer, judged by a chaoslib tolerance) with
the HTTP deadline it lacks (chaoshelius.slo.steady.NO_FALLBACK_NOW_PROBE: "no recommender in
fallback now" written with it, the way Chaos Toolkit users write such a check).
"""

from __future__ import annotations

from typing import Any

from chaoslib.types import Configuration, Secrets

from chaoshelius.config import HarnessConfig
from chaoshelius.slo import prometheus as prom
from chaoshelius.slo.verdict import fmt_number, gated, verdict

__all__ = ["query", "query_value"]


def query_value(
    query: str,
    min_value: float | None = None,
    max_value: float | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """`ok` when the instant `query` (one series) is within [min_value, max_value] now.
    No series is a failure. Example: `max(reco_engine_in_fallback_mode)` with max_value 0.
    Before any fault it raises instead of returning `ok: false` (a broken start fails the run)."""
    config = HarnessConfig.from_chaos(configuration)
    value = prom.client(config).instant_value(query)
    ok = (
        value is not None
        and (min_value is None or value >= min_value)
        and (max_value is None or value <= max_value)
    )
    return gated(
        verdict(
            ok,
            value,
            {"min": min_value, "max": max_value},
            f"{query} = {fmt_number(value)} (allowed [{min_value}, {max_value}])",
            query=query,
        )
    )


def query(
    query: str, configuration: Configuration = None, secrets: Secrets = None
) -> dict[str, Any]:
    """chaostoolkit-prometheus's `query` (raw API answer) under a hard HTTP deadline.
    Raises when Prometheus is unreachable, hung, or the query returns no data."""
    config = HarnessConfig.from_chaos(configuration)
    return prom.guarded_chaosprometheus_query(config, query)
