"""PromQL the probes ask, built apart from the judgements (pure functions, unit-tested).

Times are epoch seconds; `@ t` pins an evaluation to the past, so a probe run after the method
asks about the fault window exactly, whatever happened since.
"""

from __future__ import annotations

import math

from chaoshelius.topology import CLIENT_REQUESTS

__all__ = [
    "at",
    "duration",
    "increase_at",
    "quantile_over",
    "raw_range",
    "selector",
    "success_ratio_worst",
    "up_count",
]


def duration(seconds: float) -> str:
    """A PromQL duration covering `seconds` (whole seconds, at least 1 s)."""
    return f"{max(1, math.ceil(seconds))}s"


def at(t: float) -> str:
    return f"@ {t:.3f}"


def selector(metric: str, **labels: str | None) -> str:
    """`metric{k="v",...}` with the labels that are set."""
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items() if v is not None)
    return f"{metric}{{{inner}}}" if inner else metric


def raw_range(series_selector: str, start: float, end: float) -> str:
    """Every raw sample of the selected series in [start, end] (a range-vector instant query):
    real scrape timestamps, no lookback-delta staleness smoothing."""
    return f"{series_selector}[{duration(end - start)}] {at(end)}"


def increase_at(series_selector: str, start: float, end: float) -> str:
    """Summed increase of a counter over [start, end]."""
    return f"sum(increase({series_selector}[{duration(end - start)}] {at(end)}))"


def success_ratio_worst(
    request_name: str | None, start: float, end: float, short_seconds: float
) -> str:
    """The lowest client success ratio over any `short_seconds` window in [start, end]."""
    all_sel = selector(CLIENT_REQUESTS, name=request_name)
    ok_sel = selector(CLIENT_REQUESTS, name=request_name, outcome="success")
    w = duration(short_seconds)
    return (
        f"min_over_time((sum(rate({ok_sel}[{w}])) / clamp_min(sum(rate({all_sel}[{w}])), 1e-9))"
        f"[{duration(end - start)}:1s] {at(end)})"
    )


def quantile_over(q: float, histogram: str, start: float, end: float, **labels: str | None) -> str:
    """The `q` quantile of a histogram's observations in [start, end], all series (with the
    `labels` that are set) summed."""
    buckets = selector(f"{histogram}_bucket", **labels)
    return (
        f"histogram_quantile({q}, sum by (le) "
        f"(increase({buckets}[{duration(end - start)}] {at(end)})))"
    )


def up_count(app: str, zone: str | None = None) -> str:
    """How many targets of `app` (in `zone`) Prometheus scraped successfully (0 when none)."""
    return f"count({selector('up', app=app, zone=zone)} == 1) or vector(0)"


def up_count_by_zone(app: str) -> str:
    """How many targets of `app` Prometheus scraped successfully, per zone (a zone with none
    has no series)."""
    return f"count by (zone) ({selector('up', app=app)} == 1)"
