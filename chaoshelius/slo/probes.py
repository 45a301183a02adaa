"""SLO probes judged in Prometheus, most of them over this run's fault window.

Every probe returns `{"ok", "value", "threshold", "query", "description", "window", ...}`; use
the tolerance `{"type": "jsonpath", "path": "$.ok", "expect": true}`. Rules they all follow:

- **Window probes hold vacuously before the method** (no fault action called yet in this run)
  and **fail** after the method if the fault recorded no window (chaoshelius.windows).
- **No data is a failure**: a query that returns no series makes `ok` false and says so.
- **Per pod, over the whole window**: the fallback gauge is judged for every recommender pod,
  not as a `max()` where one honest pod hides a lying or unscraped one.
- **Clients are judged over the fault and its recovery** (until the load stopped, or
  `recovery_seconds` after the fault's end), with the worst short window in the verdict.
- An unreachable, erroring or hung Prometheus raises PrometheusError (HTTP timeouts on every
  call); in the after-method hypothesis that marks the run deviated, `chaos run` exits 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from chaoslib.types import Configuration, Secrets

from chaoshelius import windows
from chaoshelius.config import HarnessConfig
from chaoshelius.exceptions import TargetError
from chaoshelius.slo import prometheus as prom
from chaoshelius.slo import queries as pq
from chaoshelius.slo import verdict as clock
from chaoshelius.slo.verdict import Judged, gated, verdict, window_probe
from chaoshelius.topology import (
    CLIENT_LATENCY,
    CLIENT_REQUESTS,
    FALLBACK_GAUGE,
    MODEL_ALIAS,
    MODEL_INFO,
    MODEL_NAME,
    App,
    FaultKind,
)

__all__ = [
    "alert_fired",
    "client_success_ratio",
    "counter_grew",
    "fallback_cleared_within",
    "fallback_engaged_within",
    "fallback_never_engaged",
    "latency_p99_ratio",
    "models_converged_within",
    "query",
    "query_value",
    "replicas_recovered_within",
    "targets_went_down",
]

# a pod's samples this close to the fault's start count as "present when it started"
_PRESENT_SLACK_SECONDS = 3.0


def _fmt(value: float | None, digits: int = 4) -> str:
    return "no data" if value is None else f"{value:.{digits}g}"


def _ms(seconds: float | None) -> str:
    return "no data" if seconds is None else f"{seconds * 1000:.0f} ms"


def _judged_end(judged: Judged, recovery_seconds: float | None) -> float:
    """Where a client judgement ends: the fault's end plus `recovery_seconds` (None: until the
    load stopped), never later than now. A fault that never ended is judged until now."""
    now = clock.now()
    if judged.window.ended_at is None:
        return now
    if recovery_seconds is None:
        stopped = windows.load_stopped_at()
        end = stopped if stopped is not None and stopped > judged.end else now
    else:
        end = judged.end + recovery_seconds
    return max(judged.end, min(end, now))


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


# ------------------------------------------------------------------ what users saw
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
    request_name: str | None = None,
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
    """
    p = judged.prometheus
    start = judged.start
    end = _judged_end(judged, recovery_seconds)
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
    problems = []
    if total < min_requests:
        problems.append(f"only {total:.0f} requests completed (need {min_requests})")
    if throughput is None:
        problems.append("no requests in the baseline before the fault")
    elif throughput < min_throughput_ratio:
        problems.append(f"throughput fell to {throughput:.0%} of the baseline")
    if ratio < min_ratio:
        problems.append(f"success ratio {ratio:.4f} < {min_ratio}")
    if worst is None or worst < min_worst_ratio:
        problems.append(
            f"worst {worst_window_seconds:g} s success ratio {_fmt(worst)} < {min_worst_ratio}"
        )
    return judged.result(
        not problems,
        ratio,
        f"clients over the fault and recovery ({span:.0f} s): success ratio {ratio:.4f} over "
        f"{total:.0f} requests ({rate:.0f}/s), worst {worst_window_seconds:g} s "
        f"{_fmt(worst)}, throughput {_fmt(throughput, 3)}x baseline"
        + (f"; FAILED: {'; '.join(problems)}" if problems else ""),
        query_text,
        throughput_ratio=throughput,
        requests_per_second=rate,
        **extra,
    )


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
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Client latency over the fault and its recovery against the `baseline_seconds` before it,
    at the tail (p99) and in the middle (p50).

    `ok` when p99 during <= `max_ratio` x p99 before + `noise_seconds` **and** p50 during <=
    `p50_max_ratio` x p50 before + `p50_noise_seconds`. The allowances are additive, from the
    measured noise of the healthy service (docs/experiments.md, "Thresholds"), so a fast service
    cannot hide a 10x slower path behind a fixed floor; the p50 check catches a slower path on
    every request that a noisy tail would hide. No data fails.
    """
    p = judged.prometheus
    start = judged.start
    end = _judged_end(judged, recovery_seconds)
    q_during = pq.quantile_over(0.99, metric, start, end)
    q_before = pq.quantile_over(0.99, metric, start - baseline_seconds, start)
    during = p.instant_value(q_during)
    before = p.instant_value(q_before)
    p50_during = p.instant_value(pq.quantile_over(0.5, metric, start, end))
    p50_before = p.instant_value(pq.quantile_over(0.5, metric, start - baseline_seconds, start))
    extra: dict[str, Any] = {
        "p99_during_seconds": during,
        "p99_before_seconds": before,
        "p50_during_seconds": p50_during,
        "p50_before_seconds": p50_before,
    }
    values = (during, before, p50_during, p50_before)
    if any(v is None for v in values) or not before or not p50_before:
        return judged.result(
            False,
            None,
            f"no latency data ({metric}) before or during the fault: p99 before "
            f"{_ms(before)}, during {_ms(during)}; p50 before {_ms(p50_before)}, during "
            f"{_ms(p50_during)}",
            q_during,
            **extra,
        )
    assert during is not None and before and p50_during is not None and p50_before  # noqa: S101
    allowed = max_ratio * before + noise_seconds
    p50_allowed = p50_max_ratio * p50_before + p50_noise_seconds
    problems = []
    if during > allowed:
        problems.append(f"p99 {_ms(during)} > {_ms(allowed)}")
    if p50_during > p50_allowed:
        problems.append(f"p50 {_ms(p50_during)} > {_ms(p50_allowed)}")
    ratio = during / before
    return judged.result(
        not problems,
        ratio,
        f"client p99 {_ms(during)} over the fault and recovery vs {_ms(before)} before "
        f"(x{ratio:.2f}; allowed x{max_ratio:g} + {_ms(noise_seconds)}), p50 "
        f"{_ms(p50_during)} vs {_ms(p50_before)} (x{p50_during / p50_before:.2f}; allowed "
        f"x{p50_max_ratio:g} + {_ms(p50_noise_seconds)})"
        + (f"; FAILED: {'; '.join(problems)}" if problems else ""),
        f"{q_during} / {q_before}",
        allowed_seconds=allowed,
        p50_ratio=p50_during / p50_before,
        **extra,
    )


# ------------------------------------------------------------------ the fallback, per pod
@dataclass
class _PodGauge:
    pod: str
    zone: str
    points: list[tuple[float, float]]

    @property
    def born(self) -> float:
        return self.points[0][0]

    @property
    def last_seen(self) -> float:
        return self.points[-1][0]


def _gauges(judged: Judged, start: float, end: float) -> tuple[str, list[_PodGauge]]:
    """Raw per-pod samples of the fallback gauge in [start, end] (real scrape times)."""
    sel = pq.selector(FALLBACK_GAUGE, app=App.RECO.value)
    q = pq.raw_range(sel, start, end)
    series = judged.prometheus.matrix(q)
    pods = [
        _PodGauge(s.labels.get("pod", "?"), s.labels.get("zone", "?"), s.points)
        for s in series
        if s.points
    ]
    return q, sorted(pods, key=lambda g: g.pod)


def _scrape_interval(pods: list[_PodGauge]) -> float:
    """The scrape interval the samples show (median spacing; 1 s if there are too few)."""
    gaps = sorted(
        b - a for g in pods for (a, _), (b, _) in zip(g.points, g.points[1:], strict=False)
    )
    return gaps[len(gaps) // 2] if gaps else 1.0


def _dependency_back_at(judged: Judged, after_app_back: str | None) -> float | None:
    """When the fault's dependency was back: the fault's end, or (with `after_app_back`) when
    Prometheus first scraped a target of that app again after it. None: never came back."""
    end = judged.end
    if not after_app_back:
        return end
    q = pq.up_count(after_app_back)
    series = judged.prometheus.range_series(q, end, max(clock.now(), end + 1))
    return next((t for s in series for t, v in s.points if v >= 1), None)


@window_probe()
def fallback_engaged_within(
    judged: Judged,
    seconds: float,
    after_app_back: str | None = None,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Every recommender pod reported fallback (gauge 1) within `seconds` of the fault's start
    (of its own start, for a pod born during the fault) and **kept reporting it until the
    dependency was back**: the fault's end, or with `after_app_back` (e.g. "mlflow") the moment
    Prometheus scraped that app again.

    Fails when any pod never reported 1, reported it late, cleared before the dependency was
    back, or was not scraped during the fault (a pod nobody hears from proves nothing); a pod
    this run killed on purpose (a `pod-kill` window) may stop reporting.
    Reports `time_to_fallback_seconds` (the slowest pod)."""
    start = judged.start
    back = _dependency_back_at(judged, after_app_back) or judged.end
    q, pods = _gauges(judged, start - 10.0, back)
    if not pods:
        return judged.result(False, None, f"no {FALLBACK_GAUGE} data in the fault window", q)
    problems: list[str] = []
    engaged: dict[str, float] = {}
    killed = {str(p) for w in windows.windows() for p in w.details.get("killed", [])}
    slack = 2 * _scrape_interval(pods) if after_app_back else 0.5
    for gauge in pods:
        present = gauge.born <= start + _PRESENT_SLACK_SECONDS
        ref = start if present else gauge.born
        inside = [(t, v) for t, v in gauge.points if t >= ref]
        if not inside:
            problems.append(f"{gauge.pod} was not scraped after the fault started")
            continue
        first = next((t for t, v in inside if v >= 1), None)
        if first is None:
            problems.append(f"{gauge.pod} never reported fallback")
            continue
        engaged[gauge.pod] = first - ref
        if first - ref > seconds:
            problems.append(f"{gauge.pod} reported fallback only after {first - ref:.1f} s")
        # the dependency's return is seen through its own scrape, the clear through the pod's:
        # each is up to one scrape interval late, so a clear closer to `back` than two
        # intervals is the same moment (a pod that reached the first MLflow replica up)
        cleared = next((t for t, v in inside if t > first and t < back - slack and v < 1), None)
        if cleared is not None:
            problems.append(
                f"{gauge.pod} cleared at +{cleared - start:.1f} s, before the dependency was "
                f"back (+{back - start:.1f} s)"
            )
        if gauge.last_seen < back - 5.0 and gauge.pod not in killed:
            problems.append(f"{gauge.pod} stopped reporting at +{gauge.last_seen - start:.1f} s")
    slowest = max(engaged.values()) if engaged else None
    return judged.result(
        not problems,
        slowest,
        f"{len(pods)} recommender pod(s): "
        + (
            "; ".join(problems)
            if problems
            else f"all reported fallback within {_fmt(slowest, 3)} s and held it until the "
            f"dependency was back (+{back - start:.1f} s); allowed {seconds:g} s"
        ),
        q,
        time_to_fallback_seconds=slowest,
        pods={pod: round(v, 3) for pod, v in engaged.items()},
    )


@window_probe()
def fallback_cleared_within(
    judged: Judged,
    seconds: float,
    after_app_back: str | None = None,
    recovery_seconds: float | None = None,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Every recommender pod was back at 0 within `seconds` of the dependency being back (the
    fault's end, or with `after_app_back` when Prometheus scraped that app again) and stayed 0
    since, until the load stopped (or `recovery_seconds` after the fault's end). A pod still in
    fallback, one that flapped back to 1, or one reporting nothing after the fault fails.
    Reports `time_to_recover_seconds` (the slowest pod, from the dependency's
    return) and `fault_to_recover_seconds` (from the fault's end)."""
    if judged.window.ended_at is None:
        return judged.result(False, None, "the fault has not ended (no restore recorded)")
    end = judged.end
    now = _judged_end(judged, recovery_seconds)
    back = _dependency_back_at(judged, after_app_back)
    if back is None:
        return judged.result(False, None, f"{after_app_back} never came back after the fault")
    q, pods = _gauges(judged, end, now)
    if not pods:
        return judged.result(False, None, f"no {FALLBACK_GAUGE} data after the fault", q)
    problems: list[str] = []
    cleared: dict[str, float] = {}
    for gauge in pods:
        if gauge.last_seen < now - 5.0:
            continue  # a pod gone since (replaced): its replacement is judged instead
        last_one = max((t for t, v in gauge.points if v >= 1), default=None)
        clear_at = next(
            (t for t, v in gauge.points if v < 1 and (last_one is None or t > last_one)), None
        )
        if clear_at is None:
            problems.append(f"{gauge.pod} still in fallback {now - back:.0f} s after recovery")
            continue
        since_back = max(0.0, clear_at - back)
        cleared[gauge.pod] = since_back
        if since_back > seconds:
            problems.append(f"{gauge.pod} cleared {since_back:.1f} s after the dependency")
    before = set(windows.pods_before(judged.window, App.RECO.value))
    seen = {g.pod for g in pods}
    if before and not before & seen and not cleared:
        problems.append("none of the recommenders of the fault's start reports any more")
    slowest = max(cleared.values()) if cleared else None
    where = f"{after_app_back} was back" if after_app_back else "the fault ended"
    return judged.result(
        not problems and bool(cleared),
        slowest,
        f"{len(cleared)} recommender pod(s) out of fallback "
        + (
            f"within {_fmt(slowest, 3)} s after {where} (allowed {seconds:g} s)"
            if not problems
            else f"; FAILED: {'; '.join(problems)}"
        ),
        q,
        time_to_recover_seconds=slowest,
        fault_to_recover_seconds=None if slowest is None else slowest + (back - end),
        app_back_after_seconds=back - end,
        pods={pod: round(v, 3) for pod, v in cleared.items()},
    )


@window_probe()
def fallback_never_engaged(
    judged: Judged,
    grace_seconds: float = 5.0,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """No recommender pod reported fallback from the fault's start to `grace_seconds` after
    its end (HA should have absorbed the fault), and every pod that the fault did not target
    was scraped throughout. No data fails."""
    start = judged.start
    stop = min(clock.now(), judged.end + grace_seconds)
    q, pods = _gauges(judged, start, stop)
    if not pods:
        return judged.result(False, None, f"no {FALLBACK_GAUGE} data in the fault window", q)
    targeted = set(judged.window.details.get("killed", []))
    # and the pods a kubernetes drain evicted ("namespace/name"): evicted within a scrape
    # interval of the drain's start, they may never be scraped in the window
    targeted |= {str(p).rsplit("/", 1)[-1] for p in judged.window.details.get("evicted", [])}
    drained = judged.window.target if judged.window.kind == FaultKind.DRAIN.value else None
    problems = []
    highest = 0.0
    for gauge in pods:
        ones = [t for t, v in gauge.points if v >= 1]
        highest = max(highest, max(v for _, v in gauge.points))
        if ones:
            problems.append(f"{gauge.pod} reported fallback at +{ones[0] - start:.1f} s")
    expected = {p for p in windows.pods_before(judged.window, App.RECO.value) if p not in targeted}
    if drained:
        expected -= {g.pod for g in pods if g.zone == drained}
    missing = sorted(expected - {g.pod for g in pods})
    if missing:
        problems.append(f"not scraped during the fault: {missing}")
    return judged.result(
        not problems,
        highest,
        f"{len(pods)} recommender pod(s) during the fault: "
        + ("; ".join(problems) if problems else "none reported fallback"),
        q,
    )


# ------------------------------------------------------------------ recovery of the model
def _registry_version(config: HarnessConfig) -> str:
    """The version the registry's alias points at now (asked from MLflow itself)."""
    url = f"{config.helius_mlflow_url.rstrip('/')}/api/2.0/mlflow/registered-models/alias"
    try:
        answer = httpx.get(
            url,
            params={"name": MODEL_NAME, "alias": MODEL_ALIAS},
            timeout=config.helius_http_timeout_seconds,
        )
        answer.raise_for_status()
        return str(answer.json()["model_version"]["version"])
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        raise TargetError(
            f"cannot read {MODEL_NAME}@{MODEL_ALIAS} from MLflow at {config.helius_mlflow_url} "
            f"({exc}); check helius_mlflow_url"
        ) from exc


@window_probe()
def models_converged_within(
    judged: Judged,
    seconds: float,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Every recommender pod serves the registry's current model (`reco@champion`, asked from
    MLflow now) and reached it within `seconds` of the fault's end: a model promoted while the
    registry was unreachable, or an outage, leaves no pod stuck on an old version.
    Reports `time_to_converge_seconds` (the slowest pod, from the fault's end)."""
    if judged.window.ended_at is None:
        return judged.result(False, None, "the fault has not ended (no restore recorded)")
    version = _registry_version(judged.config)
    end = judged.end
    now = clock.now()
    sel = pq.selector(MODEL_INFO, app=App.RECO.value)
    q = pq.raw_range(sel, judged.start - 10.0, now)
    series = judged.prometheus.matrix(q)
    by_pod: dict[str, list[tuple[float, str]]] = {}
    for s in series:
        pod = s.labels.get("pod", "?")
        by_pod.setdefault(pod, []).extend((t, s.labels.get("version", "?")) for t, _ in s.points)
    live = {p: sorted(pts) for p, pts in by_pod.items() if max(t for t, _ in pts) >= now - 5.0}
    if not live:
        return judged.result(False, None, f"no {MODEL_INFO} data from any recommender now", q)
    problems = []
    reached: dict[str, float] = {}
    for pod, pts in sorted(live.items()):
        current = pts[-1][1]
        if current != version:
            problems.append(f"{pod} serves version {current}")
            continue
        # the start of the last run of samples on the registry's version
        first = pts[-1][0]
        for t, v in reversed(pts):
            if v != version:
                break
            first = t
        reached[pod] = max(0.0, first - end)
        if first - end > seconds:
            problems.append(f"{pod} reached version {version} {first - end:.1f} s after")
    slowest = max(reached.values()) if reached else None
    return judged.result(
        not problems,
        slowest,
        f"registry {MODEL_NAME}@{MODEL_ALIAS} = version {version}; {len(live)} pod(s): "
        + (
            "; ".join(problems)
            if problems
            else f"all on it within {_fmt(slowest, 3)} s of the fault's end (allowed {seconds:g} s)"
        ),
        q,
        registry_version=version,
        time_to_converge_seconds=slowest,
    )


# ------------------------------------------------------------------ alerts
@window_probe()
def alert_fired(
    judged: Judged,
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
    start = judged.start
    q = f'max(ALERTS{{alertname="{alertname}",alertstate="firing"}})'
    stop = max(min(clock.now(), start + within_seconds), start + 1)
    series = judged.prometheus.range_series(q, start, stop, step=1.0)
    # seconds after the start at which the alert was firing (absent steps: not firing)
    firing = {round(t - start) for s in series for t, v in s.points if v >= 1}
    at_start = 0 in firing
    tta = next((float(k) for k in sorted(firing) if k > 0 and k - 1 not in firing), None)
    if tta is not None and tta > within_seconds:
        tta = None
    if tta is not None:
        description = f"alert {alertname} started firing {tta:.0f} s after the fault started"
    elif at_start:
        description = (
            f"alert {alertname} was already firing when the fault started and did not fire "
            f"anew within {within_seconds:g} s: nothing shows this fault raised it"
        )
    else:
        description = f"alert {alertname} never fired within {within_seconds:g} s of the fault"
    return judged.result(
        tta is not None,
        tta,
        description,
        q,
        time_to_alert_seconds=tta,
        firing_at_start=at_start,
    )


# ------------------------------------------------------------------ proof the fault bit
@window_probe()
def counter_grew(
    judged: Judged,
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
    start, end = judged.start, judged.end
    span = pq.duration(end - start + 5)
    at_end = f"last_over_time({selector}[{span}] @ {end:.3f})"
    before = f"last_over_time({selector}[5m] @ {start:.3f})"
    # per series: end - before (0 for a series born in the window); a reset counts from 0
    delta = f"({at_end} - ({before} or {at_end} * 0))"
    q = f"sum(({delta} >= 0) or {at_end})"
    value = judged.prometheus.instant_value(q)
    return judged.result(
        value is not None and value >= min_increase,
        value,
        f"{selector} grew by {_fmt(value)} during the fault (need >= {min_increase:g})",
        q,
    )


@window_probe()
def targets_went_down(
    judged: Judged,
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
    start, end = judged.start, judged.end
    sel = pq.selector("up", app=app, zone=zone)
    # 15 s: three scrapes on a cluster (5 s), fifteen locally; one at 5 s could hold none
    q_before = f"count(last_over_time({sel}[15s] @ {start:.3f}) == 1)"
    q_during = (
        f"min_over_time((count({sel} == 1) or vector(0))[{pq.duration(end - start)}:1s] "
        f"@ {end:.3f})"
    )
    before = judged.prometheus.instant_value(q_before)
    during = judged.prometheus.instant_value(q_during)
    where = f"{app}" + (f" in {zone}" if zone else "")
    if not before:
        return judged.result(
            False,
            during,
            f"no {where} target was up just before the fault ({sel}): nothing to take down, "
            "or Prometheus does not scrape these pods",
            q_before,
        )
    return judged.result(
        during is not None and during <= max_up,
        during,
        f"{where}: {before:.0f} target(s) up before the fault, as few as {_fmt(during)} "
        f"during it (need <= {max_up})",
        q_during,
        up_before=before,
    )


@window_probe()
def replicas_recovered_within(
    judged: Judged,
    app: str,
    seconds: float,
    replicas: int | None = None,
    per_zone: bool = False,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """`ok` when Prometheus saw `replicas` `up` targets of `app` again within `seconds` of the
    fault's end (of its start for an instant fault such as a kill), and still does now, and the
    target reports those pods Ready.
    `replicas` defaults to the ready count the fault action recorded for `app`.
    Reports `time_to_recover_seconds` (from the first dip below `replicas`).

    `per_zone`: every zone must be back to the targets it had when the fault started (a
    zone's pods rescheduled into the other zones are not "back": the count is right, the
    spread is not).

    "Back" means serving, not only scrapable: a pod can answer `/metrics` while its `/ready`
    says 503 (e.g. a readiness that needs one successful registry refresh during an MLflow
    outage), and `up` would count it. So the verdict also needs, from the driver (the `Ready`
    condition on a cluster, the supervisor's probe of `/ready` locally): `replicas` Ready pods
    of `app` now (per zone: each zone's Ready pods as many as when the fault started); for a
    kill closed by `await_pods_ready`, replacements Ready within `seconds` of the kill (the
    window's end is when the await saw them Ready); and no await for `app` timed out in this
    run (Chaos Toolkit only logs a failed method action, so a replacement that never became
    Ready in time would otherwise pass on `up` alone)."""
    window = judged.window
    if replicas is None and not per_zone:
        replicas = windows.ready_before(window, app)
        judged.threshold["replicas"] = replicas
    result = (
        _zones_recovered(judged, app, seconds)
        if per_zone
        else _up_recovered(judged, app, seconds, int(replicas or 1))
    )
    problems = _not_ready(judged, app, seconds, None if per_zone else int(replicas or 1))
    if problems:
        result["ok"] = False
        result["description"] += "; FAILED on readiness: " + "; ".join(problems)
    return result


def _not_ready(judged: Judged, app: str, seconds: float, replicas: int | None) -> list[str]:
    """Why `app` is not back as the target sees it (Ready pods), see replicas_recovered_within;
    `replicas` None: per zone, against the ready pods each zone had at the fault's start."""
    window = judged.window
    problems = [f"an await for {app} timed out: {why}" for why in windows.await_timeouts(app)]
    pods = judged.driver.list_pods(app)
    ready = [p for p in pods if p.ready]
    if replicas is not None and len(ready) < replicas:
        problems.append(f"{len(ready)} of {replicas} {app} pod(s) Ready now")
    if replicas is None:
        wanted = (window.details.get("zones_before") or {}).get(app, {})
        for zone, count in sorted(wanted.items()):
            here = sum(1 for p in ready if (p.zone or "?") == zone)
            if here < int(count):
                problems.append(f"{zone}: {here} of {count} {app} pod(s) Ready now")
    if window.kind == FaultKind.POD_KILL.value and window.ended_at is not None:
        ready_after = window.ended_at - window.started_at
        if ready_after > seconds:
            problems.append(
                f"the replacement(s) were Ready {ready_after:.1f} s after the kill "
                f"(allowed {seconds:g} s)"
            )
    return problems


def _up_recovered(judged: Judged, app: str, seconds: float, replicas: int) -> dict[str, Any]:
    """The `up` half of replicas_recovered_within (Prometheus's scrapes)."""
    window = judged.window
    start, ref = window.started_at, _recovery_reference(window)
    now = clock.now()
    q = pq.up_count(app)
    series = judged.prometheus.range_series(q, start, now)
    points = series[0].points if series else []
    if not points:
        return judged.result(False, None, f"no up data for {app}", q)
    dipped, back = _dip_and_back(points, replicas)
    last = points[-1][1]
    # never seen below `replicas`: the replacement came up within a scrape interval
    if last < replicas or (back is None and dipped is not None):
        return judged.result(
            False,
            None,
            f"{app}: {last:.0f} of {replicas} targets up now, {now - ref:.0f} s after the fault",
            q,
            time_to_recover_seconds=None,
        )
    ttr = max(0.0, back - ref) if back is not None else 0.0
    return judged.result(
        ttr <= seconds,
        ttr,
        f"{app}: back to {replicas} up targets {ttr:.1f} s after the fault "
        + ("(never seen below)" if dipped is None else f"(dipped at +{dipped - start:.1f} s)"),
        q,
        time_to_recover_seconds=ttr,
    )


def _recovery_reference(window: windows.Window) -> float:
    """When recovery is timed from: the fault's end, or its start for an instant fault (a kill)."""
    instant_fault = window.kind == FaultKind.POD_KILL.value
    if window.ended_at is not None and not instant_fault:
        return window.ended_at
    return window.started_at


def _dip_and_back(
    points: list[tuple[float, float]], wanted: float
) -> tuple[float | None, float | None]:
    """When a count first fell below `wanted`, and when it was back at `wanted` for good (None:
    never fell / not back now)."""
    dipped = next((t for t, v in points if v < wanted), None)
    back = None
    for t, v in points:
        if dipped is None or t < dipped:
            continue
        back = (back if back is not None else t) if v >= wanted else None
    return dipped, back


def _zones_recovered(judged: Judged, app: str, seconds: float) -> dict[str, Any]:
    window = judged.window
    start, ref = window.started_at, _recovery_reference(window)
    now = clock.now()
    q = pq.up_count_by_zone(app)
    before = {s.labels.get("zone", "?"): s.value for s in judged.prometheus.instant(q, at=start)}
    judged.threshold["per_zone"] = before
    if not before:
        return judged.result(False, None, f"no up data for {app} when the fault started", q)
    series = {
        s.labels.get("zone", "?"): dict(s.points)
        for s in judged.prometheus.range_series(q, start, now)
    }
    steps = sorted({t for points in series.values() for t in points})
    late: dict[str, float | None] = {}  # zone -> s after the fault it was back (None: it is not)
    for zone, wanted in before.items():
        points = series.get(zone, {})
        counts = [(t, points.get(t, 0.0)) for t in steps]  # no series at a step: none up
        dipped, back = _dip_and_back(counts, wanted)
        late[zone] = 0.0 if dipped is None else None if back is None else max(0.0, back - ref)
    missing = sorted(z for z, t in late.items() if t is None)
    if missing:
        last = steps[-1] if steps else now
        now_up = {z: series.get(z, {}).get(last, 0.0) for z in sorted(before)}
        return judged.result(
            False,
            None,
            f"{app}: {missing} not back to the up targets they had before the fault "
            f"{now - ref:.0f} s after it (per zone before: {before}, now: {now_up})",
            q,
            time_to_recover_seconds=None,
            per_zone_seconds=late,
        )
    ttr = max(t for t in late.values() if t is not None)
    return judged.result(
        ttr <= seconds,
        ttr,
        f"{app}: every zone back to its up targets {ttr:.1f} s after the fault "
        f"(per zone: { ({z: round(t, 1) for z, t in late.items() if t is not None}) })",
        q,
        time_to_recover_seconds=ttr,
        per_zone_seconds=late,
    )
