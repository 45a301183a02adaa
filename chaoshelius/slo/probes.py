"""SLO probes judged in Prometheus, most of them over this run's fault window.

Every probe returns `{"ok", "value", "threshold", "query", "description", "window", ...}`; use
the tolerance `{"type": "jsonpath", "path": "$.ok", "expect": true}`. Rules they all follow:

- **Window probes hold vacuously before the method** (no fault action called yet in this run)
  and **fail** after the method if the fault recorded no window (chaoshelius.windows).
- **No data is a failure**: a query that returns no series makes `ok` false and says so.
- An unreachable, erroring or hung Prometheus raises PrometheusError (HTTP timeouts on every
  call); in the after-method hypothesis that marks the run deviated, `chaos run` exits 1.
"""

from __future__ import annotations

import math
import time
from typing import Any

from chaoslib.types import Configuration, Secrets

from chaoshelius.config import HarnessConfig
from chaoshelius.pods.actions import ready_before
from chaoshelius.slo import prometheus as prom
from chaoshelius.slo.verdict import gated, verdict, window_json, window_or_verdict
from chaoshelius.windows import Window

__all__ = [
    "alert_fired",
    "client_success_ratio",
    "counter_grew",
    "fallback_cleared_within",
    "fallback_engaged_within",
    "fallback_never_engaged",
    "latency_p99_ratio",
    "query",
    "query_value",
    "replicas_recovered_within",
    "targets_went_down",
]

CLIENT_REQUESTS = "helius_client_requests_total"
CLIENT_LATENCY = "helius_client_request_latency_seconds"
FALLBACK_GAUGE = "reco_engine_in_fallback_mode"


# ------------------------------------------------------------------ helpers
def _now() -> float:
    """The judging clock, epoch seconds: "now" for open windows and "still ... now" checks.
    One seam, so tests can judge a recorded history as of the end of the recording."""
    return time.time()


def _dur(seconds: float) -> str:
    return f"{max(1, math.ceil(seconds))}s"


def _bounds(window: Window) -> tuple[float, float]:
    end = window.ended_at if window.ended_at is not None else _now()
    return window.started_at, max(end, window.started_at + 1.0)


def _sel(metric: str, **labels: str | None) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items() if v is not None)
    return f"{metric}{{{inner}}}" if inner else metric


def _fmt(value: float | None, digits: int = 4) -> str:
    return "no data" if value is None else f"{value:.{digits}g}"


# ------------------------------------------------------------------ current state
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
    value = prom.instant_value(config, query)
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
            f"{query} = {_fmt(value)} (allowed [{min_value}, {max_value}])",
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


# ------------------------------------------------------------------ during the fault
def client_success_ratio(
    min_ratio: float = 0.99,
    min_requests: int = 20,
    min_throughput_ratio: float = 0.5,
    baseline_seconds: float = 15.0,
    request_name: str | None = None,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """What users saw during the fault window, from the load generator's own counters.

    `ok` when the success ratio over the window is at least `min_ratio`, at least
    `min_requests` requests completed in it, and the completed-request rate stayed at least
    `min_throughput_ratio` of the rate in the `baseline_seconds` before the fault (hung
    requests complete nothing: a ratio over nothing proves nothing).
    """
    threshold = {
        "min_ratio": min_ratio,
        "min_requests": min_requests,
        "min_throughput_ratio": min_throughput_ratio,
    }
    window = window_or_verdict(window_id, kind, target, threshold)
    if isinstance(window, dict):
        return window
    config = HarnessConfig.from_chaos(configuration)
    start, end = _bounds(window)
    d = _dur(end - start)
    all_sel = _sel(CLIENT_REQUESTS, name=request_name)
    ok_sel = _sel(CLIENT_REQUESTS, name=request_name, outcome="success")
    q_total = f"sum(increase({all_sel}[{d}] @ {end:.3f}))"
    q_success = f"sum(increase({ok_sel}[{d}] @ {end:.3f}))"
    b = _dur(baseline_seconds)
    q_base = f"sum(increase({all_sel}[{b}] @ {start:.3f}))"
    q_worst = (
        f"min_over_time((sum(rate({ok_sel}[5s])) / clamp_min(sum(rate({all_sel}[5s])), 1e-9))"
        f"[{d}:1s] @ {end:.3f})"
    )
    total = prom.instant_value(config, q_total)
    success = prom.instant_value(config, q_success) or 0.0
    base = prom.instant_value(config, q_base)
    worst = prom.instant_value(config, q_worst)
    query_text = f"{q_success} / {q_total}"
    extra: dict[str, Any] = {
        "requests": total,
        "worst_5s_ratio": worst,
        "window": window_json(window),
    }
    if total is None or base is None:
        return verdict(
            False,
            None,
            threshold,
            f"no client request data in Prometheus for the fault window ({all_sel}): "
            "is the load generator running and scraped?",
            query=query_text,
            **extra,
        )
    ratio = min(1.0, success / total) if total > 0 else 0.0
    duration = end - start
    throughput = (total / duration) / (base / baseline_seconds) if base > 0 else None
    problems = []
    if total < min_requests:
        problems.append(f"only {total:.0f} requests completed (need {min_requests})")
    if throughput is None:
        problems.append("no requests in the baseline before the fault")
    elif throughput < min_throughput_ratio:
        problems.append(f"throughput fell to {throughput:.0%} of the baseline")
    if ratio < min_ratio:
        problems.append(f"success ratio {ratio:.4f} < {min_ratio}")
    return verdict(
        not problems,
        ratio,
        threshold,
        f"clients during the fault ({duration:.0f} s): success ratio {ratio:.4f} over "
        f"{total:.0f} requests, worst 5 s {_fmt(worst)}, throughput "
        f"{_fmt(throughput, 3)}x baseline"
        + (f"; FAILED: {'; '.join(problems)}" if problems else ""),
        query=query_text,
        throughput_ratio=throughput,
        **extra,
    )


def latency_p99_ratio(
    max_ratio: float = 2.0,
    floor_seconds: float = 0.25,
    baseline_seconds: float = 15.0,
    metric: str = CLIENT_LATENCY,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """p99 latency during the fault window over p99 in the `baseline_seconds` before it.

    `ok` when p99 during <= max(max_ratio * p99 before, floor_seconds): the floor keeps
    histogram-bucket noise on a fast service from failing the check. No data fails.
    """
    threshold = {"max_ratio": max_ratio, "floor_seconds": floor_seconds}
    window = window_or_verdict(window_id, kind, target, threshold)
    if isinstance(window, dict):
        return window
    config = HarnessConfig.from_chaos(configuration)
    start, end = _bounds(window)

    def p99(at: float, span: float) -> tuple[str, float | None]:
        q = (
            f"histogram_quantile(0.99, sum by (le) "
            f"(increase({metric}_bucket[{_dur(span)}] @ {at:.3f})))"
        )
        return q, prom.instant_value(config, q)

    q_during, during = p99(end, end - start)
    q_before, before = p99(start, baseline_seconds)
    extra: dict[str, Any] = {"p99_during_seconds": during, "p99_before_seconds": before}
    if during is None or before is None or before <= 0:
        return verdict(
            False,
            None,
            threshold,
            f"no latency data ({metric}) before or during the fault: p99 before "
            f"{_fmt(before)}, during {_fmt(during)}",
            query=q_during,
            window=window_json(window),
            **extra,
        )
    ratio = during / before
    ok = during <= max(max_ratio * before, floor_seconds)
    return verdict(
        ok,
        ratio,
        threshold,
        f"p99 {metric}: {during * 1000:.0f} ms during the fault vs {before * 1000:.0f} ms "
        f"before (x{ratio:.2f}; allowed x{max_ratio} or up to {floor_seconds * 1000:.0f} ms)",
        query=f"{q_during} / {q_before}",
        window=window_json(window),
        **extra,
    )


def fallback_engaged_within(
    seconds: float,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """`ok` when `max(reco_engine_in_fallback_mode)` reached 1 within `seconds` of the fault's
    start. Reports `time_to_fallback_seconds`."""
    window = window_or_verdict(window_id, kind, target, {"seconds": seconds})
    if isinstance(window, dict):
        return window
    config = HarnessConfig.from_chaos(configuration)
    start, end = _bounds(window)
    q = f"max({FALLBACK_GAUGE})"
    stop = min(_now(), max(end, start + seconds) + 2)
    series = prom.range_series(config, q, start, stop)
    if not series:
        return verdict(
            False,
            None,
            {"seconds": seconds},
            f"no {FALLBACK_GAUGE} data in the window",
            q,
            window_json(window),
        )
    first = next((t for t, v in series[0].points if t >= start and v >= 1), None)
    ttf = None if first is None else max(0.0, first - start)
    ok = ttf is not None and ttf <= seconds
    return verdict(
        ok,
        ttf,
        {"seconds": seconds},
        "fallback never engaged during the fault"
        if ttf is None
        else f"fallback engaged {ttf:.1f} s after the fault started (allowed {seconds:g} s)",
        q,
        window_json(window),
        time_to_fallback_seconds=ttf,
    )


def fallback_cleared_within(
    seconds: float,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    after_app_back: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """`ok` when `max(reco_engine_in_fallback_mode)` was back to 0 within `seconds` of the
    fault's end and stayed 0 since. Fails if the fault has not ended. Reports
    `time_to_recover_seconds` (from the fault's end).

    With `after_app_back` (e.g. "mlflow"), the clock starts when Prometheus first sees a target
    of that app up again after the fault's end: how fast the *service* recovers once its
    dependency is back, whatever that dependency's own cold start costs. The dependency must
    come back: if it never does, the check fails."""
    threshold: dict[str, Any] = {"seconds": seconds}
    if after_app_back:
        threshold["after_app_back"] = after_app_back
    window = window_or_verdict(window_id, kind, target, threshold)
    if isinstance(window, dict):
        return window
    if window.ended_at is None:
        return verdict(
            False,
            None,
            threshold,
            "the fault has not ended (no restore recorded)",
            "",
            window_json(window),
        )
    config = HarnessConfig.from_chaos(configuration)
    end = window.ended_at
    now = _now()
    q = f"max({FALLBACK_GAUGE})"
    series = prom.range_series(config, q, end, now)
    points = series[0].points if series else []
    if not points:
        return verdict(
            False,
            None,
            threshold,
            f"no {FALLBACK_GAUGE} data after the fault",
            q,
            window_json(window),
        )
    cleared_at = None
    for t, v in points:
        if v >= 1:
            cleared_at = None
        elif cleared_at is None:
            cleared_at = t
    if cleared_at is None:
        return verdict(
            False,
            None,
            threshold,
            f"still in fallback {now - end:.0f} s after the fault ended (allowed {seconds:g} s)",
            q,
            window_json(window),
            time_to_recover_seconds=None,
        )
    ttr = max(0.0, cleared_at - end)
    if not after_app_back:
        return verdict(
            ttr <= seconds,
            ttr,
            threshold,
            f"fallback cleared {ttr:.1f} s after the fault ended (allowed {seconds:g} s)",
            q,
            window_json(window),
            time_to_recover_seconds=ttr,
        )
    up_q = f"max({_sel('up', app=after_app_back)})"
    up_series = prom.range_series(config, up_q, end, now)
    back_at = next((t for t, v in (up_series[0].points if up_series else []) if v >= 1), None)
    if back_at is None:
        return verdict(
            False,
            None,
            threshold,
            f"{after_app_back} never came back after the fault ended",
            up_q,
            window_json(window),
            time_to_recover_seconds=ttr,
        )
    since_back = max(0.0, cleared_at - back_at)
    return verdict(
        since_back <= seconds,
        since_back,
        threshold,
        f"fallback cleared {since_back:.1f} s after {after_app_back} was back "
        f"({ttr:.1f} s after the fault ended; allowed {seconds:g} s after {after_app_back})",
        f"{q} ; {up_q}",
        window_json(window),
        time_to_recover_seconds=ttr,
        app_back_after_seconds=back_at - end,
    )


def fallback_never_engaged(
    grace_seconds: float = 5.0,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """`ok` when no recommender pod reported fallback from the fault's start to
    `grace_seconds` after its end (HA should have absorbed the fault). No data fails."""
    threshold = {"max": 0}
    window = window_or_verdict(window_id, kind, target, threshold)
    if isinstance(window, dict):
        return window
    config = HarnessConfig.from_chaos(configuration)
    start, end = _bounds(window)
    stop = min(_now(), end + grace_seconds)
    q = f"max_over_time(max({FALLBACK_GAUGE})[{_dur(stop - start)}:1s] @ {stop:.3f})"
    value = prom.instant_value(config, q)
    return verdict(
        value == 0,
        value,
        threshold,
        f"highest fallback gauge during the fault: {_fmt(value)} (expected 0)",
        q,
        window_json(window),
    )


def alert_fired(
    alertname: str,
    within_seconds: float,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """`ok` when Prometheus alert `alertname` started firing within `within_seconds` of the
    fault's start (the ALERTS series, judged each second). An alert that was already firing
    when the fault started does not count (nothing shows this fault raised it) unless it
    stopped and fired again in that time. Reports `time_to_alert_seconds`."""
    threshold = {"within_seconds": within_seconds}
    window = window_or_verdict(window_id, kind, target, threshold)
    if isinstance(window, dict):
        return window
    config = HarnessConfig.from_chaos(configuration)
    start, _ = _bounds(window)
    q = f'max(ALERTS{{alertname="{alertname}",alertstate="firing"}})'
    stop = max(min(_now(), start + within_seconds), start + 1)
    series = prom.range_series(config, q, start, stop, step=1.0)
    # seconds after the start at which the alert was firing (absent steps: not firing)
    firing = {round(t - start) for s in series for t, v in s.points if v >= 1}
    at_start = 0 in firing
    tta = next((float(k) for k in sorted(firing) if k > 0 and k - 1 not in firing), None)
    if tta is not None and tta > within_seconds:
        tta = None
    if tta is not None:
        description = f"alert {alertname} started firing {tta:.1f} s after the fault started"
    elif at_start:
        description = (
            f"alert {alertname} was already firing when the fault started and did not fire "
            f"anew within {within_seconds:g} s: nothing shows this fault raised it"
        )
    else:
        description = f"alert {alertname} never fired within {within_seconds:g} s of the fault"
    return verdict(
        tta is not None,
        tta,
        threshold,
        description,
        q,
        window_json(window),
        time_to_alert_seconds=tta,
        firing_at_start=at_start,
    )


# ------------------------------------------------------------------ proof the fault bit
def counter_grew(
    selector: str,
    min_increase: float = 1.0,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Proof the fault reached the service: the counter `selector` (summed) grew by at least
    `min_increase` during the window, e.g. `reco_engine_refresh_failures_total`.

    Per series, compares the last value at the window's end with the last value before its
    start (a series born during the fault counts from 0, so the first increment is not lost as
    it would be with `increase()`; a series gone before the end, e.g. a replaced pod's, counts
    nothing), then sums. A series that went down (a counter reset) counts from 0.
    """
    threshold = {"min_increase": min_increase}
    window = window_or_verdict(window_id, kind, target, threshold)
    if isinstance(window, dict):
        return window
    config = HarnessConfig.from_chaos(configuration)
    start, end = _bounds(window)
    span = _dur(end - start + 5)
    at_end = f"last_over_time({selector}[{span}] @ {end:.3f})"
    before = f"last_over_time({selector}[5m] @ {start:.3f})"
    # per series: end - before (0 for a series born in the window); a reset counts from 0
    delta = f"({at_end} - ({before} or {at_end} * 0))"
    q = f"sum(({delta} >= 0) or {at_end})"
    value = prom.instant_value(config, q)
    return verdict(
        value is not None and value >= min_increase,
        value,
        threshold,
        f"{selector} grew by {_fmt(value)} during the fault (need >= {min_increase:g})",
        q,
        window_json(window),
    )


def targets_went_down(
    app: str,
    zone: str | None = None,
    max_up: int = 0,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Proof pods were really gone: at least one `up` target of `app` (in `zone`) before the
    fault, and at most `max_up` at some point during it (Prometheus's own scrapes)."""
    threshold = {"max_up": max_up}
    window = window_or_verdict(window_id, kind, target, threshold)
    if isinstance(window, dict):
        return window
    config = HarnessConfig.from_chaos(configuration)
    start, end = _bounds(window)
    sel = _sel("up", app=app, zone=zone)
    q_before = f"count(last_over_time({sel}[5s] @ {start:.3f}) == 1)"
    q_during = (
        f"min_over_time((count({sel} == 1) or vector(0))[{_dur(end - start)}:1s] @ {end:.3f})"
    )
    before = prom.instant_value(config, q_before)
    during = prom.instant_value(config, q_during)
    where = f"{app}" + (f" in {zone}" if zone else "")
    if not before:
        return verdict(
            False,
            during,
            threshold,
            f"no {where} target was up just before the fault ({sel}): nothing to take down, "
            "or Prometheus does not scrape these pods",
            q_before,
            window_json(window),
        )
    return verdict(
        during is not None and during <= max_up,
        during,
        threshold,
        f"{where}: {before:.0f} target(s) up before the fault, as few as {_fmt(during)} "
        f"during it (need <= {max_up})",
        q_during,
        window_json(window),
        up_before=before,
    )


def replicas_recovered_within(
    app: str,
    seconds: float,
    replicas: int | None = None,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """`ok` when Prometheus saw `replicas` `up` targets of `app` again within `seconds` of the
    fault's end (of its start for an instant fault such as a kill), and still does now.
    `replicas` defaults to the ready count the fault action recorded for `app`.
    Reports `time_to_recover_seconds` (from the first dip below `replicas`)."""
    threshold: dict[str, Any] = {"replicas": replicas, "seconds": seconds}
    window = window_or_verdict(window_id, kind, target, threshold)
    if isinstance(window, dict):
        return window
    if replicas is None:
        replicas = ready_before(window, app)
        threshold["replicas"] = replicas
    config = HarnessConfig.from_chaos(configuration)
    start = window.started_at
    ref = window.ended_at if window.ended_at is not None and window.kind != "pod-kill" else start
    now = _now()
    q = f"count({_sel('up', app=app)} == 1) or vector(0)"
    series = prom.range_series(config, q, start, now)
    points = series[0].points if series else []
    if not points:
        return verdict(False, None, threshold, f"no up data for {app}", q, window_json(window))
    dipped = next((t for t, v in points if v < replicas), None)
    back = None
    for t, v in points:
        if dipped is None or t < dipped:
            continue
        if v >= replicas:
            back = t if back is None else back
        else:
            back = None
    last = points[-1][1]
    if last < replicas or back is None:
        return verdict(
            False,
            None,
            threshold,
            f"{app}: {last:.0f} of {replicas} targets up now, {now - ref:.0f} s after the fault",
            q,
            window_json(window),
            time_to_recover_seconds=None,
        )
    ttr = max(0.0, back - ref) if dipped is not None else 0.0
    return verdict(
        ttr <= seconds,
        ttr,
        threshold,
        f"{app}: back to {replicas} up targets {ttr:.1f} s after the fault "
        + ("(never seen below)" if dipped is None else f"(dipped at +{dipped - start:.1f} s)"),
        q,
        window_json(window),
        time_to_recover_seconds=ttr,
    )
