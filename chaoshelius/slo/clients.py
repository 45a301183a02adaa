"""What users saw: the load generator's counters and latency over the fault and its recovery."""

from __future__ import annotations

from typing import Any

from chaoslib.types import Configuration, Secrets

from chaoshelius.slo import queries as pq
from chaoshelius.slo.verdict import Judged, fmt_ms, fmt_number, window_probe
from chaoshelius.topology import CLIENT_LATENCY, CLIENT_REQUESTS, PREDICT_ROUTE, SERVER_LATENCY

__all__ = ["client_success_ratio", "latency_p99_ratio"]

# the label that names the request on each latency histogram a probe may judge
_NAME_LABEL = {CLIENT_LATENCY: "name", SERVER_LATENCY: "route"}


@window_probe()
def client_success_ratio(
    judged: Judged,
    min_ratio: float = 0.99,
    min_worst_ratio: float = 0.95,
    worst_window_seconds: float = 5.0,
    min_requests: int = 200,
    min_throughput_ratio: float = 0.5,
    baseline_seconds: float = 15.0,
    recovery_seconds: float | None = None,
    request_name: str | None = PREDICT_ROUTE,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """What users saw during the fault **and its recovery**, from the load generator's counters.

    The judged span runs from the fault's start to the moment the load stopped (or
    `recovery_seconds` after the fault's end). `ok` when, over that span: the success ratio is
    at least `min_ratio`; no `worst_window_seconds` window fell below `min_worst_ratio` (a burst
    of errors is not averaged away); at least `min_requests` requests completed; and the
    completed-request rate stayed at least `min_throughput_ratio` of the rate in the
    `baseline_seconds` before the fault (hung requests complete nothing).

    Only the requests named `request_name` count: predictions by default (the load also calls
    `/health`, which always answers 200 and would dilute their errors); None counts them all.
    """
    p = judged.prometheus
    start = judged.start
    end = judged.recovery_end(recovery_seconds)
    all_sel = pq.selector(CLIENT_REQUESTS, name=request_name)
    ok_sel = pq.selector(CLIENT_REQUESTS, name=request_name, outcome="success")
    q_total = pq.increase_at(all_sel, start, end)
    q_success = pq.increase_at(ok_sel, start, end)
    q_base = pq.increase_at(all_sel, start - baseline_seconds, start)
    q_worst = pq.success_ratio_worst(request_name, start, end, worst_window_seconds)
    total = p.instant_value(q_total)
    success = p.instant_value(q_success) or 0.0
    base = p.instant_value(q_base)
    worst = p.instant_value(q_worst)
    span = end - start
    extra: dict[str, Any] = {
        "requests": total,
        "worst_window_ratio": worst,
        "judged_seconds": round(span, 3),
        "fault_seconds": round(judged.end - start, 3),
    }
    query_text = f"{q_success} / {q_total}"
    if total is None or base is None:
        return judged.result(
            False,
            None,
            f"no client request data in Prometheus for the fault window ({all_sel}): "
            "is the load generator running and scraped?",
            query_text,
            **extra,
        )
    ratio = min(1.0, success / total) if total > 0 else 0.0
    rate = total / span
    base_rate = base / baseline_seconds
    throughput = rate / base_rate if base_rate > 0 else None
    problems = _client_problems(
        total, ratio, throughput, min_requests, min_throughput_ratio, min_ratio
    ) + _worst_window_problems(worst, min_worst_ratio, worst_window_seconds)
    return judged.result(
        not problems,
        ratio,
        f"clients over the fault and recovery ({span:.0f} s): success ratio {ratio:.4f} over "
        f"{total:.0f} requests ({rate:.0f}/s), worst {worst_window_seconds:g} s "
        f"{fmt_number(worst)}, throughput {fmt_number(throughput, 3)}x baseline"
        + (f"; FAILED: {'; '.join(problems)}" if problems else ""),
        query_text,
        throughput_ratio=throughput,
        requests_per_second=rate,
        **extra,
    )


def _client_problems(
    total: float,
    ratio: float,
    throughput: float | None,
    min_requests: int,
    min_throughput_ratio: float,
    min_ratio: float,
) -> list[str]:
    """Why the clients' span fails on volume, throughput or the overall success ratio."""
    problems = []
    if total < min_requests:
        problems.append(f"only {total:.0f} requests completed (need {min_requests})")
    if throughput is None:
        problems.append("no requests in the baseline before the fault")
    elif throughput < min_throughput_ratio:
        problems.append(f"throughput fell to {throughput:.0%} of the baseline")
    if ratio < min_ratio:
        problems.append(f"success ratio {ratio:.4f} < {min_ratio}")
    return problems


def _worst_window_problems(
    worst: float | None, min_worst_ratio: float, window_seconds: float
) -> list[str]:
    """Why the worst short window fails (a burst of errors is not averaged away)."""
    if worst is not None and worst >= min_worst_ratio:
        return []
    return [f"worst {window_seconds:g} s success ratio {fmt_number(worst)} < {min_worst_ratio}"]


@window_probe()
def latency_p99_ratio(
    judged: Judged,
    max_ratio: float = 2.0,
    noise_seconds: float = 0.01,
    p50_max_ratio: float = 2.0,
    p50_noise_seconds: float = 0.005,
    baseline_seconds: float = 10.0,
    recovery_seconds: float | None = None,
    metric: str = CLIENT_LATENCY,
    request_name: str | None = PREDICT_ROUTE,
    slo_p99_ms: float | None = None,
    slo_p50_ms: float | None = None,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Client latency over the fault and its recovery, against the `baseline_seconds` before it
    and against the service's own SLO, at the tail (p99) and in the middle (p50).

    `ok` when p99 during <= `max_ratio` x p99 before + `noise_seconds` **and** p50 during <=
    `p50_max_ratio` x p50 before + `p50_noise_seconds`, and, when they are given, p99 during <=
    `slo_p99_ms` and p50 during <= `slo_p50_ms` (absolute ceilings: the SLO users would write,
    which does not loosen when the service is slow before the fault as the relative allowance
    does). The relative allowances are additive, from the measured noise of the healthy service
    (docs/experiments.md, "Thresholds"), so a fast service cannot hide a 10x slower path behind a
    fixed floor; the p50 checks catch a slower path on every request that a noisy tail would
    hide. No data fails.

    Only the requests named `request_name` count (the `name` label of the client histogram, the
    `route` of the server's; another `metric` is not filtered): predictions by default, not the
    load's `/health` calls; None counts them all.
    """
    label = _NAME_LABEL.get(metric)
    named = {label: request_name} if label else {}
    extra, q_during, q_before = _quantiles(
        judged, metric, named, baseline_seconds, judged.recovery_end(recovery_seconds)
    )
    during, before = extra["p99_during_seconds"], extra["p99_before_seconds"]
    p50_during, p50_before = extra["p50_during_seconds"], extra["p50_before_seconds"]
    if during is None or p50_during is None or not before or not p50_before:
        return judged.result(
            False,
            None,
            f"no latency data ({metric}) before or during the fault: p99 before "
            f"{fmt_ms(before)}, during {fmt_ms(during)}; p50 before {fmt_ms(p50_before)}, during "
            f"{fmt_ms(p50_during)}",
            q_during,
            **extra,
        )
    allowed = max_ratio * before + noise_seconds
    p50_allowed = p50_max_ratio * p50_before + p50_noise_seconds
    problems = []
    if during > allowed:
        problems.append(f"p99 {fmt_ms(during)} > {fmt_ms(allowed)}")
    if p50_during > p50_allowed:
        problems.append(f"p50 {fmt_ms(p50_during)} > {fmt_ms(p50_allowed)}")
    problems += _slo_problems(during, p50_during, slo_p99_ms, slo_p50_ms)
    ratio = during / before
    return judged.result(
        not problems,
        ratio,
        f"client p99 {fmt_ms(during)} over the fault and recovery vs {fmt_ms(before)} before "
        f"(x{ratio:.2f}; allowed x{max_ratio:g} + {fmt_ms(noise_seconds)}), p50 "
        f"{fmt_ms(p50_during)} vs {fmt_ms(p50_before)} (x{p50_during / p50_before:.2f}; allowed "
        f"x{p50_max_ratio:g} + {fmt_ms(p50_noise_seconds)})"
        + _slo_text(slo_p99_ms, slo_p50_ms)
        + (f"; FAILED: {'; '.join(problems)}" if problems else ""),
        f"{q_during} / {q_before}",
        allowed_seconds=allowed,
        p50_ratio=p50_during / p50_before,
        slo_p99_seconds=None if slo_p99_ms is None else slo_p99_ms / 1000,
        slo_p50_seconds=None if slo_p50_ms is None else slo_p50_ms / 1000,
        **extra,
    )


def _quantiles(
    judged: Judged, metric: str, named: dict[str, str | None], baseline_seconds: float, end: float
) -> tuple[dict[str, float | None], str, str]:
    """p99 and p50 over [start, end] and over the `baseline_seconds` before the start (None:
    no data), with the p99 queries (during, before) the verdict quotes."""
    p, start = judged.prometheus, judged.start
    before_start = start - baseline_seconds
    q_during = pq.quantile_over(0.99, metric, start, end, **named)
    q_before = pq.quantile_over(0.99, metric, before_start, start, **named)
    values = {
        "p99_during_seconds": p.instant_value(q_during),
        "p99_before_seconds": p.instant_value(q_before),
        "p50_during_seconds": p.instant_value(pq.quantile_over(0.5, metric, start, end, **named)),
        "p50_before_seconds": p.instant_value(
            pq.quantile_over(0.5, metric, before_start, start, **named)
        ),
    }
    return values, q_during, q_before


def _slo_problems(
    p99: float, p50: float, slo_p99_ms: float | None, slo_p50_ms: float | None
) -> list[str]:
    """Where the span's p99 or p50 (seconds) broke the service's absolute SLO."""
    problems = []
    if slo_p99_ms is not None and p99 * 1000 > slo_p99_ms:
        problems.append(f"p99 {fmt_ms(p99)} > the SLO's {slo_p99_ms:g} ms")
    if slo_p50_ms is not None and p50 * 1000 > slo_p50_ms:
        problems.append(f"p50 {fmt_ms(p50)} > the SLO's {slo_p50_ms:g} ms")
    return problems


def _slo_text(slo_p99_ms: float | None, slo_p50_ms: float | None) -> str:
    ceilings = [
        f"{name} <= {value:g} ms"
        for name, value in (("p99", slo_p99_ms), ("p50", slo_p50_ms))
        if value is not None
    ]
    return f"; SLO {', '.join(ceilings)}" if ceilings else ""
