"""The shared blocks of every experiment: configuration keys, controls, the client SLOs and
their thresholds, the before/after checks, load, the fault and undo steps, and the rollbacks.

`experiments/build.py` describes each experiment with these, so a fix lands in all of them.
"""

from __future__ import annotations

from typing import Any

from chaoshelius.catalogue.describe import thresholds
from chaoshelius.catalogue.steps import (
    Json,
    action,
    calls,
    control,
    env,
    harness_key,
    placeholder,
    probe,
)
from chaoshelius.catalogue.timing import SETTINGS, SETTLE, TIMING, TTL, WARM_UP, setting, t
from chaoshelius.controls import journal, safeguards, steady_gate
from chaoshelius.load import actions as load
from chaoshelius.network import actions as network
from chaoshelius.pods import actions as pods
from chaoshelius.pods import probes as pod_probes
from chaoshelius.slo import judge_all
from chaoshelius.slo import probes as slo
from chaoshelius.slo.steady import (
    NO_FALLBACK_NOW_PROBE,
    NO_FALLBACK_NOW_QUERY,
    NO_FALLBACK_NOW_TOLERANCE,
)
from chaoshelius.topology import ZONES, App, FaultKind, PathMode
from chaoshelius.zones import actions as zones

RECO, MLFLOW = App.RECO.value, App.MLFLOW.value
REPLICAS = 3  # every app of the stack runs 3 replicas, one per zone
# The zone of every zone-pinned step: a configuration key, so a cluster's own zone names work
# (`--var helius_zone=eu-west-1a`, or HELIUS_ZONE); the local stack's and the kind overlay's
# zone-a by default.
ZONE_KEY, DEFAULT_ZONE = "helius_zone", ZONES[0]
ZONE = placeholder(ZONE_KEY)

# The load every experiment runs under (chaoshelius.load.actions.start_load). Locust's
# run time bounds it even if nobody stops it.
# The rate is the suite's: `helius_load_rate` / HELIUS_LOAD_RATE, else 250 requests/s
# (chaoshelius.load.actions.start_load; docs/load.md).
LOAD: dict[str, Any] = {"duration_seconds": 300}

# Client SLOs, from the healthy service's measured noise (docs/experiments.md, "Thresholds").
# The judged span includes the recovery, when the local stack starts processes on the same two
# cores as the recommenders: the tail (p99) gets x3, the median (p50), which a slower path on
# every request moves and process starts barely do, keeps x2.
SUCCESS = {
    "min_ratio": 0.99,
    "min_worst_ratio": 0.95,
    "baseline_seconds": t("helius_baseline_seconds"),
    "worst_window_seconds": t("helius_short_window_seconds"),
}
# The tail of a 40-55 s span on two shared cores (MLflow reconnecting, the pods reloading a
# model) moved p99 from 21 ms to 48 ms in a healthy model-promoted run and past 3x + 10 ms in
# CI (2026-11-30): the tail's additive noise is 50 ms. A slower path on every request moves the
# median, which keeps x2 + 5 ms.
# Beside the relative allowance, every experiment holds the service to its absolute SLO
# (`helius_slo_p99_ms`, `helius_slo_p50_ms`: catalogue.timing.SETTINGS, with their derivation),
# which a service already slow before the fault cannot widen.
LATENCY = {
    "max_ratio": 3.0,
    "noise_seconds": 0.05,
    "p50_max_ratio": 2.0,
    "p50_noise_seconds": 0.005,
    "baseline_seconds": t("helius_baseline_seconds"),
    "slo_p99_ms": setting("helius_slo_p99_ms"),
    "slo_p50_ms": setting("helius_slo_p50_ms"),
}
# Where the recovery restarts MLflow or a recommender (mlflow-outage, mlflow-pod-kill,
# reco-pod-kill, the cold start, az-drain). The former 3x + 1 s was sized for 12-25 s cold
# starts (tails of 140-650 ms, 2026-11-30); pods forked from a warm parent start in 1-3 s, and
# the campaign of 2026-12-07 (29 such runs on a quiet two-core machine, 5 more in a fresh
# clone's CI) put the tail at most 2.1x the p99 before, never above 3x (39 ms vs 18 ms before
# at worst): the restart adds no tail of its own. It keeps the promotion's 150 ms of additive
# noise (a process loading a model on the shared cores, below), at most 0.19 of which any of
# those runs used; the median keeps x2 + 5 ms (0.33 used at most). The service's SLO (300 ms)
# bounds the rest.
RESTARTS = {"max_ratio": 3.0, "noise_seconds": 0.15}
# A promotion makes every pod fetch and load the new model on the same two cores as its
# requests: healthy model-promoted runs put the tail 70-78 ms above 3x the baseline's p99
# (97 ms vs 24 ms, 89 ms vs 19 ms: 0.80 and 0.84 of the 50 ms allowance, 2026-11-30). The
# tail gets twice that, 150 ms; the median (x2 + 5 ms) still guards the path every request takes.
MODEL_SWAP = {**LATENCY, "noise_seconds": 0.15}
# A killed recommender's in-flight requests are lost, as on a cluster.
LOST_IN_FLIGHT = {"min_ratio": 0.98, "min_worst_ratio": 0.8}
# Each recommender's resident memory from the first fault to the end of the run (its own first
# sample for a replacement). Healthy local runs (2026-12-07) grew a pod by at most 0.5 MiB in
# rds-path-cut, 1.0 MiB in reco-pod-kill (the replacement, from its first sample) and 3.75 MiB
# in model-promoted-during-partition (every pod loads the promoted model): 10 MiB is 2.7x the
# largest, and a cache that keeps ~9 KiB per answer passes it within a run (page-tokens).
MEMORY = {"max_growth_mib": 10, "app": RECO}
# Each recommender's own /predict answers, pod by pod (slo.per_pod): at most 1 % errors on any
# pod (the clients' floor, which one bad pod of three is diluted under in the aggregate), and
# each pod's p99 within the experiment's client latency class against the fleet's p99 before
# the fault (docs/experiments.md, "Thresholds": healthy pods measured there, with the margin).
PER_POD = {"max_error_ratio": 0.01, "baseline_seconds": t("helius_baseline_seconds")}

# ---------------------------------------------------------------- configuration and controls
# the HarnessConfig keys every experiment declares, with the harness's defaults
HARNESS_KEYS = (
    "target",
    "helius_control_url",
    "prometheus_base_url",
    "helius_reco_url",
    "helius_mlflow_url",
    "helius_loadgen_metrics_port",
    "helius_run_dir",
    "kube_namespace",
    "kube_allowed_contexts",
    # context=server-url or context=sha256:<CA fingerprint>: the cluster a context must be
    "kube_allowed_servers",
    "kube_context",
    # the RDS subnet group's CIDRs, comma-separated (one per zone it spans)
    "kube_rds_cidr",
)
CONFIGURATION: Json = {
    **{key: harness_key(key) for key in HARNESS_KEYS},
    # the zone the zone-pinned experiments hit (a kill in it, its drain): a value of the nodes'
    # topology.kubernetes.io/zone label on a cluster (eu-west-1a on EKS), zone-a|b|c locally
    ZONE_KEY: env(ZONE_KEY, DEFAULT_ZONE),
    **{key: env(key, value, env_var_type="int") for key, value in TIMING.items()},
    **{key: env(key, value, env_var_type="int") for key, value in SETTINGS.items()},
}
CONTROLS: list[Json] = [
    control("judge-every-probe", judge_all),
    # no fault into a stack that is not steady (alerts, fallback) when the fault is due
    control("helius-steady-gate", steady_gate, timeout_seconds=60),
    # the journal in the run dir, for `chaoshelius report build` after a plain `chaos run`
    control("helius-journal", journal),
    # stop conditions: abort the method (rollbacks play) when users are hurt past these
    control(
        "helius-safeguards",
        safeguards,
        min_success_ratio=0.5,
        max_p99_seconds=5.0,
        window_seconds=10,
        consecutive=2,
    ),
]


# ---------------------------------------------------------------- shared checks
# `w` is a fault window (kind, target) a probe judges. An optional argument is taken as a
# keyword extra (`**per_zone`), so it is written only when given, where the files have it.
def window(kind: FaultKind, target: str) -> Json:
    """The fault window a probe judges: its kind and what it hit."""
    return {"kind": kind.value, "target": target}


def steady_now() -> list[Json]:
    """Checked before the fault (a broken start fails the run) and again after it."""
    return [
        probe("recommender-replicas-ready", pod_probes.pods_ready, app=RECO, min_ready=REPLICAS),
        probe("mlflow-replicas-ready", pod_probes.pods_ready, app=MLFLOW, min_ready=REPLICAS),
        # a plain instant query and a threshold: chaostoolkit-prometheus's query (under our HTTP
        # deadline) and a chaoslib tolerance, as Chaos Toolkit users write it; before the method
        # the steady gate turns a miss into "not judged" (chaos run alone would exit 0)
        probe(NO_FALLBACK_NOW_PROBE["name"], slo.query, query=NO_FALLBACK_NOW_QUERY)
        | {"tolerance": NO_FALLBACK_NOW_TOLERANCE},
    ]


def clients(
    w: Json,
    success: Json | None = None,
    latency: Json | None = None,
    success_name: str = "clients-success-slo",
) -> list[Json]:
    """What users saw over the fault and its recovery (every experiment), and beside it what
    each recommender answered, pod by pod, with the same latency class."""
    tail = {k: v for k, v in {**LATENCY, **(latency or {})}.items() if k in _TAIL}
    return [
        probe(success_name, slo.client_success_ratio, **{**SUCCESS, **(success or {})}, **w),
        probe("clients-latency-slo", slo.latency_p99_ratio, **{**LATENCY, **(latency or {})}, **w),
        probe("recommenders-per-pod-slo", slo.pods_prediction_slo, **PER_POD, **tail, **w),
    ]


_TAIL = ("max_ratio", "noise_seconds")  # the latency class's p99 allowance, for per-pod p99


def no_restart(app: str, w: Json, name: str = "no-recommender-restarted") -> Json:
    return probe(name, pod_probes.pods_survived, app=app, **w)


def replaced(name: str, app: str) -> Json:
    return probe(name, pod_probes.pods_replaced, app=app)


def went_down(name: str, app: str, w: Json, **zone: str) -> Json:
    return probe(name, slo.targets_went_down, app=app, **zone, max_up=0, **w)


def no_fallback(name: str, w: Json) -> Json:
    return probe(
        name, slo.fallback_never_engaged, grace_seconds=t("helius_refresh_grace_seconds"), **w
    )


def _fallback(change: str, within: str, func: Any, w: Json, after_app_back: Json) -> Json:
    """Every pod's fallback gauge `change`d within `${within}` (timed from the app's return)."""
    name = f"fallback-{change}-on-every-pod"
    return probe(name, func, seconds=t(within), **after_app_back, **w)


def fallback_engaged(w: Json, **after_app_back: str) -> Json:
    within = "helius_fallback_within_seconds"
    return _fallback("engaged", within, slo.fallback_engaged_within, w, after_app_back)


def fallback_cleared(w: Json, **after_app_back: str) -> Json:
    within = "helius_clear_within_seconds"
    return _fallback("cleared", within, slo.fallback_cleared_within, w, after_app_back)


def alert(name: str, alertname: str, w: Json) -> Json:
    within = t("helius_alert_within_seconds")
    return probe(name, slo.alert_fired, alertname=alertname, within_seconds=within, **w)


def recovered(name: str, app: str, within: str, w: Json, **per_zone: bool) -> Json:
    return probe(name, slo.replicas_recovered_within, app=app, seconds=t(within), **per_zone, **w)


def converged(name: str, within: str, w: Json) -> Json:
    return probe(name, slo.models_converged_within, seconds=t(within), **w)


def fresh_after_recovery(w: Json, **after_app_back: str) -> Json:
    """Every pod confirmed the registry's model again after the fault and kept confirming it.
    The age bound is a new pod's refresh grace (refresh interval + deadline + scrape +
    evaluation: 2 + 5 + 1 + 1 s locally, 10 + 5 + 5 + 5 s on a cluster), which a healthy
    pod's age (at most one refresh interval + one attempt + one scrape) stays under."""
    return probe(
        "every-pod-refreshing-after-recovery",
        slo.refresh_fresh_after_recovery,
        max_age_seconds=t("helius_refresh_grace_seconds"),
        min_pods=REPLICAS,
        **after_app_back,
        **w,
    )


def memory_bounded() -> Json:
    """Every recommender's resident memory over the run (every experiment)."""
    return probe("recommender-memory-bounded", slo.memory_growth_within, **MEMORY)


# ---------------------------------------------------------------- shared steps
def start_load(after: str = WARM_UP, **rate: Any) -> Json:
    return action("start-load", load.start_load, after=after, **{**LOAD, **rate})


def stop_load() -> Json:
    return action("stop-load", load.stop_load)


def kill_one(name: str, app: str) -> Json:
    return action(name, pods.kill_pods, app=app, count=1, zone=ZONE)


def await_ready(
    name: str,
    app: str,
    timeout: str = "helius_await_timeout_seconds",
    after: str | None = SETTLE,
    **per_zone: bool,
) -> Json:
    return action(
        name, pods.await_pods_ready, after=after, app=app, timeout_seconds=t(timeout), **per_zone
    )


def scale_to_zero(app: str, hold: str) -> Json:
    return action(
        f"scale-{app}-to-zero", pods.scale_app, after=t(hold), app=app, replicas=0, ttl_seconds=TTL
    )


def restore_scale(app: str) -> Json:
    return action(f"restore-{app}", pods.restore_scale, app=app)


def cut(name: str, edge: str, mode: PathMode, hold: str, **latency_ms: int) -> Json:
    return action(
        name,
        network.cut_path,
        after=t(hold),
        edge=edge,
        mode=mode.value,
        **latency_ms,
        ttl_seconds=TTL,
    )


def restore_path(edge: str, after: str | None = None) -> Json:
    return action(f"restore-{edge}", network.restore_path, after=after, edge=edge)


def uncordon(zone: str) -> Json:
    return action("uncordon-zone", zones.uncordon_zone, zone=zone)


UNDOS = (pods.restore_scale, network.restore_path, zones.uncordon_zone)


def undos(method: list[Json]) -> list[Json]:
    """The method's steps that undo a fault, as rollbacks (a kill needs none: it is replaced)."""
    steps = [step for step in method if any(calls(step, undo) for undo in UNDOS)]
    return [{key: value for key, value in step.items() if key != "pauses"} for step in steps]


def experiment(
    title: str,
    description: str,
    tags: list[str],
    contributions: Json,
    hypothesis_title: str,
    checks: list[Json],
    method: list[Json],
    load_args: Json | None = None,
) -> Json:
    """One experiment: the shared configuration, controls and before/after checks; the load
    started first (with `load_args`) and stopped last; the rollbacks repeat every undo of the
    method (without its pause: safe to run twice) and stop the load. The description ends with
    the thresholds the steps apply, rendered from them (`describe.thresholds`)."""
    steps = [start_load(**(load_args or {})), *method, stop_load()]
    return {
        "version": "1.0.0",
        "title": title,
        "description": f"{description} {thresholds([*checks, memory_bounded()], steps)}",
        "tags": ["helius", *tags],
        "contributions": contributions,
        "configuration": CONFIGURATION,
        "controls": CONTROLS,
        "runtime": {"rollbacks": {"strategy": "always"}},
        "steady-state-hypothesis": {
            "title": hypothesis_title,
            "probes": [*steady_now(), *checks, memory_bounded()],
        },
        "method": steps,
        "rollbacks": [*undos(method), stop_load()],
    }
