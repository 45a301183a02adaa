"""The recommenders' own request metrics, judged per pod: one pod failing or slow is not
averaged away by its healthy peers (or by `/health`, which always answers 200).

The client aggregate (`clients.client_success_ratio`) is one ratio over every pod: a fallback
path that fails 3.7 % of predictions on one pod of three is 1.2 % of the fleet's, and less
once diluted over the recovery. Here each pod's `/predict` answers, as the pod counted them
(`reco_engine_requests_total`, `reco_engine_requests_latency_seconds`), are judged on their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chaoslib.types import Configuration, Secrets

from chaoshelius.slo import queries as pq
from chaoshelius.slo.verdict import Judged, fmt_ms, window_probe
from chaoshelius.topology import PREDICT_ROUTE, SERVER_LATENCY, SERVER_REQUESTS, App

__all__ = ["pods_prediction_slo"]

# an answer the service counts as an error: anything not 2xx (as its alert rule,
# namespace:reco_engine_request_errors:rate30s, counts them); the load sends only valid requests
ERROR_STATUS = "2.."


@dataclass(frozen=True)
class PodRequests:
    """One pod's `/predict` answers over the judged span."""

    pod: str
    requests: float
    errors: float
    p99_seconds: float | None

    @property
    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests > 0 else 0.0

    def problems(self, max_error_ratio: float, allowed_seconds: float) -> list[str]:
        """Why this pod fails: too many errors, a tail past the allowance (or none measured)."""
        found = []
        if self.error_ratio > max_error_ratio:
            found.append(
                f"{self.pod} failed {self.error_ratio:.2%} of {self.requests:.0f} "
                f"(> {max_error_ratio:.2%})"
            )
        if self.p99_seconds is None or self.p99_seconds > allowed_seconds:
            found.append(f"{self.pod} p99 {fmt_ms(self.p99_seconds)} > {fmt_ms(allowed_seconds)}")
        return found

    def as_json(self, min_requests: int) -> dict[str, Any]:
        return {
            "requests": round(self.requests),
            "errors": round(self.errors),
            "error_ratio": round(self.error_ratio, 5),
            "p99_seconds": self.p99_seconds,
            "judged": self.requests >= min_requests,
        }


def grown_by_pod(series_selector: str, start: float, end: float) -> str:
    """Per pod, how much a counter grew over [start, end]: per series the last value at `end`
    minus the last before `start` (a series born in the span, e.g. a replacement's or a status
    first answered in it, counts from 0, so its first increments are not lost as with
    `increase()`; a reset counts from 0), summed by pod."""
    at_end = f"last_over_time({series_selector}[{pq.duration(end - start)}] {pq.at(end)})"
    before = f"last_over_time({series_selector}[5m] {pq.at(start)})"
    delta = f"({at_end} - ({before} or {at_end} * 0))"
    return f"sum by (pod) (({delta} >= 0) or {at_end})"


def p99_by_pod(histogram: str, start: float, end: float, **labels: str | None) -> str:
    """Per pod, the p99 of a histogram's observations (with `labels`) in [start, end]."""
    buckets = pq.selector(f"{histogram}_bucket", **labels)
    return (
        f"histogram_quantile(0.99, sum by (pod, le) (increase({buckets}"
        f"[{pq.duration(end - start)}] {pq.at(end)})))"
    )


def _by_pod(judged: Judged, query: str) -> dict[str, float]:
    return {
        s.labels.get("pod", "?"): s.value
        for s in judged.prometheus.instant(query)
        if s.value == s.value  # NaN: a quantile with no observations
    }


def _pods(judged: Judged, route: str, app: str, start: float, end: float) -> list[PodRequests]:
    requests_sel = pq.selector(SERVER_REQUESTS, app=app, route=route)
    errors_sel = requests_sel[:-1] + f',status!~"{ERROR_STATUS}"}}'
    requests = _by_pod(judged, grown_by_pod(requests_sel, start, end))
    errors = _by_pod(judged, grown_by_pod(errors_sel, start, end))
    p99 = _by_pod(judged, p99_by_pod(SERVER_LATENCY, start, end, app=app, route=route))
    return [
        PodRequests(pod, total, errors.get(pod, 0.0), p99.get(pod))
        for pod, total in sorted(requests.items())
    ]


@window_probe()
def pods_prediction_slo(
    judged: Judged,
    max_error_ratio: float = 0.01,
    max_ratio: float = 3.0,
    noise_seconds: float = 0.05,
    min_requests: int = 100,
    baseline_seconds: float = 10.0,
    recovery_seconds: float | None = None,
    route: str = PREDICT_ROUTE,
    app: str = App.RECO.value,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Every recommender pod's own `route` answers over the fault **and its recovery** (until
    the load stopped, or `recovery_seconds` after the fault's end), pod by pod.

    `ok` when every judged pod answered at most `max_error_ratio` of its requests with an error
    (any status but 2xx), and its p99 stayed within `max_ratio` x the fleet's p99 in the
    `baseline_seconds` before the fault + `noise_seconds` (the client latency probe's class of
    allowance). The baseline is the fleet's, so a pod born during the fault (a replacement) is
    judged against the same line as its peers. A pod with fewer than `min_requests` answers in
    the span (a pod killed at the fault's start, a replacement that joined at its end) is
    listed as not judged: too few answers to give a ratio or a p99 a meaning (whether it came
    back is the recovery probes' business). No pod with enough answers, or no baseline, fails.
    """
    start = judged.start
    end = judged.recovery_end(recovery_seconds)
    q_base = pq.quantile_over(
        0.99, SERVER_LATENCY, start - baseline_seconds, start, app=app, route=route
    )
    base = judged.prometheus.instant_value(q_base)
    pods = _pods(judged, route, app, start, end)
    judged_pods = [p for p in pods if p.requests >= min_requests]
    skipped = [p.pod for p in pods if p.requests < min_requests]
    extra: dict[str, Any] = {
        "p99_before_seconds": base,
        "judged_seconds": round(end - start, 3),
        "pods": {p.pod: p.as_json(min_requests) for p in pods},
        "not_judged": skipped,
    }
    query = grown_by_pod(pq.selector(SERVER_REQUESTS, app=app, route=route), start, end)
    if base is None or base != base or not judged_pods:
        return judged.result(
            False,
            None,
            f"no {route} answers of {app} to judge per pod: fleet p99 before the fault "
            f"{fmt_ms(base)}, {len(judged_pods)} pod(s) with >= {min_requests} answers "
            f"(not judged: {skipped or 'none'})",
            query,
            **extra,
        )
    allowed = max_ratio * base + noise_seconds
    problems = [why for p in judged_pods for why in p.problems(max_error_ratio, allowed)]
    worst = max(judged_pods, key=lambda p: p.error_ratio)
    slowest = max((p.p99_seconds or 0.0 for p in judged_pods), default=0.0)
    return judged.result(
        not problems,
        worst.error_ratio,
        f"{len(judged_pods)} recommender pod(s) over the fault and recovery "
        f"({end - start:.0f} s): worst error ratio {worst.error_ratio:.2%} ({worst.pod}; "
        f"allowed {max_error_ratio:.2%}), slowest p99 {fmt_ms(slowest)} (allowed "
        f"x{max_ratio:g} the fleet's {fmt_ms(base)} before + {fmt_ms(noise_seconds)} = "
        f"{fmt_ms(allowed)})"
        + (f"; not judged (< {min_requests} answers): {skipped}" if skipped else "")
        + (f"; FAILED: {'; '.join(problems)}" if problems else ""),
        query,
        allowed_seconds=allowed,
        worst_p99_seconds=slowest,
        **extra,
    )
