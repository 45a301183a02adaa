"""Write the experiment catalogue (experiments/*.json) from one description.

The JSON files are what users read, edit and run (`chaos run experiments/x.json`); this script
keeps their shared parts (configuration keys, the before/after checks, load, rollbacks,
controls) identical, so a fix lands in every experiment at once. tests/experiments checks that
the committed files are exactly what this script writes.

Every step is made from the harness's own activity function (`slo.client_success_ratio`, not
a module and a name typed as strings) and its arguments are bound to the function's signature
while the catalogue is generated (chaoshelius/catalogue.py): a misspelt function or argument
fails here, naming it, not in the middle of a run. Apps, edges, fault kinds, path modes and
metric names come from chaoshelius.topology, the configuration keys from HarnessConfig.

    python experiments/build.py           # rewrite experiments/*.json
    python experiments/build.py --check   # exit 1 if a file differs (CI)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from chaoshelius.catalogue import (
    CatalogueError,
    Json,
    action,
    calls,
    control,
    env,
    harness_key,
    placeholder,
    probe,
)
from chaoshelius.controls import journal, safeguards, steady_gate
from chaoshelius.load import actions as load
from chaoshelius.model import actions as model
from chaoshelius.network import actions as network
from chaoshelius.network import probes as network_probes
from chaoshelius.pods import actions as pods
from chaoshelius.pods import probes as pod_probes
from chaoshelius.slo import judge_all
from chaoshelius.slo import probes as slo
from chaoshelius.topology import (
    EDGE_MLFLOW_RDS,
    EDGE_RECO_MLFLOW,
    FALLBACK_GAUGE,
    REFRESH_FAILURES,
    ZONES,
    App,
    FaultKind,
    PathMode,
)
from chaoshelius.zones import actions as zones

HERE = Path(__file__).resolve().parent
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
# ---------------------------------------------------------------- timing per target
# Every duration that depends on the target is a configuration key (environment variable: the
# key in upper case) whose default is the local stack's; a cluster's come from
# `--var-file experiments/profiles/cluster.json`, derived from the manifests' scrape, refresh
# and liveness settings (manifests/README.md, "Timing per target"; checked by
# tests/manifests/test_timing_profile.py).
TIMING: dict[str, int] = {
    # load before the fault: the clients spawn (within 2 s), then the baseline
    "helius_warm_up_seconds": 12,
    # the client probes' baseline before the fault, and the success SLO's worst short window
    "helius_baseline_seconds": 10,
    "helius_short_window_seconds": 5,
    # fault holds: MLflow down (longer than the recommender's liveness budget, 3 x 10 s + 2 s),
    # a path cut, a path slowed, the partition after a promotion (10 s into it), a zone drained
    "helius_outage_hold_seconds": 40,
    "helius_cut_hold_seconds": 30,
    "helius_latency_hold_seconds": 20,
    "helius_partition_hold_seconds": 10,
    "helius_drain_hold_seconds": 20,
    # every pod in fallback within / out of it (and on the registry's model) within / an alert
    # firing within (refresh 2 s, deadline 5 s, scrape and evaluation 1 s: measured 1-6.5 s,
    # 0-3.8 s and 13-15 s), and how long a new pod may read 1 before its first refresh
    "helius_fallback_within_seconds": 20,
    "helius_clear_within_seconds": 20,
    "helius_alert_within_seconds": 30,
    "helius_refresh_grace_seconds": 10,
    # every fault reverts itself after this even if the runner dies
    "helius_fault_ttl_seconds": 120,
    # after a fault is undone (or a killed pod replaced): the recovery the clients are judged on
    "helius_settle_seconds": 10,
    # pods back: a killed recommender (measured 8-11 s), one replaced during an MLflow outage,
    # a drained zone's recommenders, MLflow (cold start 15-29 s); the awaits that wait for them
    "helius_reco_back_within_seconds": 20,
    "helius_reco_await_seconds": 30,
    "helius_cold_start_within_seconds": 30,
    "helius_cold_start_await_seconds": 40,
    "helius_zone_back_within_seconds": 45,
    "helius_mlflow_back_within_seconds": 120,
    "helius_await_timeout_seconds": 150,
    # steps inside a fault: MLflow gone before the recommender is killed; the replacement
    # serving with MLflow still gone; the partition in place before the promotion
    "helius_outage_before_kill_seconds": 8,
    "helius_replacement_hold_seconds": 10,
    "helius_partition_before_promotion_seconds": 10,
}


# The cluster profile (`experiments/profiles/cluster.json`, a `chaos run --var-file`), from the
# manifests: scrape and evaluation every 5 s, a refresh every 10 s with a 5 s deadline, the
# recommender's liveness budget 10 s x 3 + 2 s = 32 s (manifests/README.md).
CLUSTER_TIMING: dict[str, int] = {
    "helius_warm_up_seconds": 60,  # the in-cluster Locust's workers connect, then a baseline
    "helius_baseline_seconds": 30,  # 6 scrapes
    "helius_short_window_seconds": 20,  # 4 scrapes
    "helius_outage_hold_seconds": 60,  # > liveness budget 32 s + one refresh 10 s
    "helius_cut_hold_seconds": 45,
    "helius_latency_hold_seconds": 45,
    "helius_partition_hold_seconds": 45,
    "helius_drain_hold_seconds": 45,  # evictions wait on PDBs and a 20 s grace
    "helius_fallback_within_seconds": 30,  # >= refresh + deadline + scrape + evaluation = 25 s
    "helius_clear_within_seconds": 30,  # >= refresh + scrape + evaluation = 20 s
    "helius_alert_within_seconds": 50,  # >= fallback 25 s + the longest for: 15 s + scrape + eval
    "helius_refresh_grace_seconds": 25,  # a new pod's first refresh, scraped and evaluated
    "helius_fault_ttl_seconds": 300,  # > the longest fault: a cold start's outage, 210 s at most
    "helius_settle_seconds": 30,  # >= the clear-within deadline: the recovery is seen whole
    # a replacement pod: scheduled, started (startup probe every 2 s), ready (every 5 s), its
    # first refresh (10 s), scraped and evaluated; on a cluster the image may also be pulled
    "helius_reco_back_within_seconds": 90,
    "helius_reco_await_seconds": 120,
    "helius_cold_start_within_seconds": 120,
    "helius_cold_start_await_seconds": 150,
    "helius_zone_back_within_seconds": 180,  # evictions wait on PDBs; a 20 s grace each
    "helius_mlflow_back_within_seconds": 240,  # MLflow's startup probe allows 120 s
    "helius_await_timeout_seconds": 300,
    "helius_outage_before_kill_seconds": 30,  # Prometheus has seen MLflow go (scrape + eval)
    "helius_replacement_hold_seconds": 30,
    "helius_partition_before_promotion_seconds": 30,  # >= refresh + deadline: a refresh failed
}
PROFILES = {"cluster": CLUSTER_TIMING}


def t(key: str) -> str:
    """A timing value: `${key}`, which Chaos Toolkit substitutes with its number."""
    if key not in TIMING:
        raise CatalogueError(f"{key!r} is not a timing key (TIMING)")
    return placeholder(key)


WARM_UP = t("helius_warm_up_seconds")
SETTLE = t("helius_settle_seconds")  # after a fault is undone: the recovery judged
TTL = t("helius_fault_ttl_seconds")

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
LATENCY = {
    "max_ratio": 3.0,
    "noise_seconds": 0.05,
    "p50_max_ratio": 2.0,
    "p50_noise_seconds": 0.005,
    "baseline_seconds": t("helius_baseline_seconds"),
}
# Where the recovery restarts MLflow or a recommender, the local stack's cold starts (a full
# core each for seconds) put the tail at 140-650 ms whatever the baseline (19-147 ms): p99
# x4.5 in mlflow-outage, x21 in the cold start, with p50 x1.1-x2.1 (CI runs 2026-11-30).
# There the median guards (x2 + 5 ms) and the tail is bounded: 3x + 1 s.
RESTARTS = {"max_ratio": 3.0, "noise_seconds": 1.0}
# A promotion makes every pod fetch and load the new model on the same two cores as its
# requests: healthy model-promoted runs put the tail 70-78 ms above 3x the baseline's p99
# (97 ms vs 24 ms, 89 ms vs 19 ms: 0.80 and 0.84 of the 50 ms allowance, 2026-11-30). The
# tail gets twice that, 150 ms; the median (x2 + 5 ms) still guards the path every request takes.
MODEL_SWAP = {**LATENCY, "noise_seconds": 0.15}
# A killed recommender's in-flight requests are lost, as on a cluster.
LOST_IN_FLIGHT = {"min_ratio": 0.98, "min_worst_ratio": 0.8}

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
def window(kind: FaultKind, target: str) -> Json:
    """The fault window a probe judges: its kind and what it hit."""
    return {"kind": kind.value, "target": target}


def steady_now() -> list[Json]:
    """Checked before the fault (a broken start fails the run) and again after it."""
    return [
        probe("recommender-replicas-ready", pod_probes.pods_ready, app=RECO, min_ready=REPLICAS),
        probe("mlflow-replicas-ready", pod_probes.pods_ready, app=MLFLOW, min_ready=REPLICAS),
        probe(
            "recommender-not-in-fallback-now",
            slo.query_value,
            query=f"max({FALLBACK_GAUGE})",
            max_value=0,
        ),
    ]


def clients(
    w: Json,
    success: Json | None = None,
    latency: Json | None = None,
    success_name: str = "clients-success-slo",
) -> list[Json]:
    """What users saw over the fault and its recovery (every experiment)."""
    return [
        probe(success_name, slo.client_success_ratio, **{**SUCCESS, **(success or {})}, **w),
        probe("clients-latency-slo", slo.latency_p99_ratio, **{**LATENCY, **(latency or {})}, **w),
    ]


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


def fallback_engaged(w: Json, **after_app_back: str) -> Json:
    seconds = t("helius_fallback_within_seconds")
    return probe(
        "fallback-engaged-on-every-pod",
        slo.fallback_engaged_within,
        seconds=seconds,
        **after_app_back,
        **w,
    )


def fallback_cleared(w: Json, **after_app_back: str) -> Json:
    seconds = t("helius_clear_within_seconds")
    return probe(
        "fallback-cleared-on-every-pod",
        slo.fallback_cleared_within,
        seconds=seconds,
        **after_app_back,
        **w,
    )


def alert(name: str, alertname: str, w: Json) -> Json:
    within = t("helius_alert_within_seconds")
    return probe(name, slo.alert_fired, alertname=alertname, within_seconds=within, **w)


def recovered(name: str, app: str, within: str, w: Json, **per_zone: bool) -> Json:
    return probe(name, slo.replicas_recovered_within, app=app, seconds=t(within), **per_zone, **w)


def converged(name: str, within: str, w: Json) -> Json:
    return probe(name, slo.models_converged_within, seconds=t(within), **w)


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
    method (without its pause: safe to run twice) and stop the load."""
    return {
        "version": "1.0.0",
        "title": title,
        "description": description,
        "tags": ["helius", *tags],
        "contributions": contributions,
        "configuration": CONFIGURATION,
        "controls": CONTROLS,
        "runtime": {"rollbacks": {"strategy": "always"}},
        "steady-state-hypothesis": {"title": hypothesis_title, "probes": steady_now() + checks},
        "method": [start_load(**(load_args or {})), *method, stop_load()],
        "rollbacks": [*undos(method), stop_load()],
    }


# ---------------------------------------------------------------- the catalogue
def mlflow_pod_kill() -> Json:
    w = window(FaultKind.POD_KILL, MLFLOW)
    return experiment(
        "Killing one MLflow pod is absorbed by HA: no fallback",
        "Kill the MLflow pod in a zone (helius_zone, default zone-a) under load. The MLflow "
        "service keeps two replicas, so "
        "the recommenders keep refreshing from the registry and never enter fallback (judged "
        "per pod); the pod is replaced under a new name. Fault window: kill -> replacement "
        "ready.",
        ["mlflow", "pod-kill", "ha"],
        {"availability": "high", "reliability": "high"},
        "MLflow HA holds: one replica lost, the recommenders never fall back",
        [
            replaced("killed-mlflow-pod-was-replaced", MLFLOW),
            no_fallback("no-fallback-during-the-kill", w),
            *clients(w, latency=RESTARTS),
            recovered("mlflow-replicas-back", MLFLOW, "helius_mlflow_back_within_seconds", w),
            no_restart(RECO, w),
        ],
        [
            kill_one("kill-one-mlflow-pod", MLFLOW),
            await_ready("await-mlflow-replacement", MLFLOW),
        ],
    )


def mlflow_outage() -> Json:
    w = window(FaultKind.SCALE, MLFLOW)
    return experiment(
        "Full MLflow outage, longer than the liveness budget: fallback on every pod, "
        "predictions continue, nobody restarts, fallback clears",
        "Scale MLflow to 0 replicas (TTL 90 s) for 40 s under load, longer than the "
        "recommender's liveness budget (3 x 10 s), then restore. Every recommender keeps "
        "answering from its last known good model, reports it (reco_engine_in_fallback_mode=1 "
        "on every pod until MLflow is back, alert RecoEngineInFallback), is not restarted, and "
        "returns to 0 and to the registry's model by itself within 20 s of MLflow being back "
        "(MLflow's own cold start is measured, not judged).",
        ["mlflow", "outage", "fallback", "liveness"],
        {"availability": "high", "reliability": "high", "observability": "high"},
        "Predictions survive a full MLflow outage and the fallback clears by itself",
        [
            went_down("mlflow-was-really-down", MLFLOW, w),
            fallback_engaged(w, after_app_back=MLFLOW),
            *clients(w, latency=RESTARTS, success_name="predictions-continued"),
            alert("fallback-alert-fired", "RecoEngineInFallback", w),
            fallback_cleared(w, after_app_back=MLFLOW),
            converged("every-pod-on-the-registry-model", "helius_mlflow_back_within_seconds", w),
            no_restart(RECO, w),
        ],
        [
            scale_to_zero(MLFLOW, "helius_outage_hold_seconds"),
            restore_scale(MLFLOW),
            await_ready("await-mlflow-back", MLFLOW),
        ],
    )


def rds_path_cut() -> Json:
    w = window(FaultKind.PATH, EDGE_MLFLOW_RDS)
    return experiment(
        "MLflow -> RDS path blackholed: fallback, alert, MLflow recovers without restart",
        "Blackhole the mlflow-rds path (connections hang, like a NetworkPolicy drop; TTL 90 s) "
        "for 30 s under load, then restore. MLflow stays up but cannot answer registry calls; "
        "the recommenders' refreshes fail (proof), every one of them enters fallback, "
        "MLflowDegraded and RecoEngineInFallback fire, clients keep their answers at their "
        "usual latency, and once the path is back MLflow serves again with the same pods "
        "and nobody was restarted.",
        ["rds", "network", "fallback"],
        {"availability": "high", "reliability": "high", "observability": "high"},
        "Losing the registry database degrades to fallback, is alerted, and heals by itself",
        [
            probe(
                "refreshes-really-failed",
                slo.counter_grew,
                selector=REFRESH_FAILURES + '{reason!="disabled"}',
                min_increase=1,
                **w,
            ),
            fallback_engaged(w),
            *clients(w, success_name="predictions-continued"),
            alert("mlflow-degraded-alert-fired", "MLflowDegraded", w),
            alert("fallback-alert-fired", "RecoEngineInFallback", w),
            fallback_cleared(w),
            probe(
                "mlflow-recovered-without-restart",
                network_probes.source_pods_unchanged,
                edge=EDGE_MLFLOW_RDS,
            ),
            no_restart(RECO, w),
        ],
        [
            cut(
                f"blackhole-{EDGE_MLFLOW_RDS}",
                EDGE_MLFLOW_RDS,
                PathMode.BLACKHOLE,
                "helius_cut_hold_seconds",
            ),
            restore_path(EDGE_MLFLOW_RDS, after=SETTLE),
        ],
    )


def az_drain() -> Json:
    zone = ZONE
    w = window(FaultKind.DRAIN, zone)
    return experiment(
        "Draining a zone (zone-a by default): its pods go, no outage, no fallback",
        "Drain a zone (helius_zone / HELIUS_ZONE, default zone-a; every pod in it stops and stays "
        "down; TTL 90 s) for 20 s under load, then uncordon. The recommender and MLflow "
        "replicas of the other zones carry the load: clients see no outage and no slowdown "
        "beyond the SLO, no recommender falls back, and the zone's pods come back.",
        ["zone", "drain", "capacity"],
        {"availability": "high", "reliability": "high"},
        "Losing a whole zone costs capacity, not availability",
        [
            went_down("drained-zone-recommenders-were-down", RECO, w, zone=zone),
            # half of what the stack sustains (measured now): losing a third of the
            # recommenders is a real stress. Availability must hold, the median may triple,
            # the tail may not pass 3x + 1 s: the zone's pods restarting on the same two
            # cores put p99 at 433-645 ms whatever the baseline (41-147 ms; three CI runs)
            # The median under a zone loss has a heavy tail on two shared cores (the zone's
            # MLflow and recommender restart beside the survivors): p50 x1.2-x2.1 in 11 of 13
            # healthy runs, x3.7 (15 ms) and x7.9 (33 ms on a 4 ms baseline) in two (campaign of
            # 2026-11-30): x3 + 25 ms. A slower path on every request (+40 ms) still fails it.
            *clients(w, latency={**RESTARTS, "p50_max_ratio": 3.0, "p50_noise_seconds": 0.025}),
            no_fallback("no-fallback", w),
            recovered(
                "recommenders-back-in-every-zone",
                RECO,
                "helius_zone_back_within_seconds",
                w,
                per_zone=True,
            ),
        ],
        [
            action(
                "drain-zone",
                zones.drain_zone,
                after=t("helius_drain_hold_seconds"),
                zone=zone,
                ttl_seconds=TTL,
            ),
            uncordon(zone),
            await_ready("await-recommenders-back", RECO, after=None, per_zone=True),
            await_ready("await-mlflow-back", MLFLOW),
        ],
        load_args={"capacity_fraction": 0.5},
    )


def mlflow_latency() -> Json:
    w = window(FaultKind.PATH, EDGE_RECO_MLFLOW)
    return experiment(
        "Slow MLflow: the recommenders' hot path latency is unaffected",
        "Add 800 ms of latency on the reco-mlflow path (TTL 90 s) for 20 s under load, then "
        "restore. Requests never wait for MLflow, so the client p99 over the fault and its "
        "recovery stays within 2x the p99 before it (+10 ms of measured noise), clients see "
        "no errors and no recommender is restarted.",
        ["mlflow", "latency", "hot-path"],
        {"performance": "high", "reliability": "medium"},
        "A slow registry never slows predictions",
        [*clients(w), no_restart(RECO, w)],
        [
            cut(
                f"slow-{EDGE_RECO_MLFLOW}",
                EDGE_RECO_MLFLOW,
                PathMode.LATENCY,
                "helius_latency_hold_seconds",
                latency_ms=800,
            ),
            restore_path(EDGE_RECO_MLFLOW, after=SETTLE),
        ],
    )


def reco_pod_kill() -> Json:
    w = window(FaultKind.POD_KILL, RECO)
    return experiment(
        "Killing one recommender pod: clients barely notice",
        "Kill the recommender pod in a zone (helius_zone, default zone-a) under load. The "
        "service proxy routes to the ready "
        "replicas; the pod is replaced under a new name and back in service within 20 s. "
        "The killed pod's in-flight requests are lost, as on a cluster. Fault window: kill -> "
        "replacement ready.",
        ["recommender", "pod-kill"],
        {"availability": "high"},
        "Losing one recommender replica is invisible to clients",
        [
            replaced("killed-recommender-was-replaced", RECO),
            *clients(w, success=LOST_IN_FLIGHT, latency=RESTARTS),
            recovered("recommenders-back", RECO, "helius_reco_back_within_seconds", w),
        ],
        [
            kill_one("kill-one-recommender", RECO),
            await_ready("await-recommender-replacement", RECO, "helius_reco_await_seconds"),
        ],
    )


def reco_cold_start_during_outage() -> Json:
    outage = window(FaultKind.SCALE, MLFLOW)
    kill = window(FaultKind.POD_KILL, RECO)
    return experiment(
        "A recommender replaced during an MLflow outage starts and serves (always starts)",
        "Scale MLflow to 0 (TTL 120 s) under load, then kill the recommender in a zone "
        "(helius_zone, default zone-a) while "
        "MLflow is still down. Its replacement must start without the registry (from its "
        "on-disk cache, or the shipped baseline), report fallback, and take traffic within "
        "30 s; then MLflow comes back and every pod clears.",
        ["recommender", "cold-start", "mlflow", "outage"],
        {"availability": "high", "reliability": "high"},
        "The recommender always starts, even when the registry is gone",
        [
            went_down("mlflow-was-really-down", MLFLOW, outage),
            recovered(
                "replacement-serving-during-outage",
                RECO,
                "helius_cold_start_within_seconds",
                kill,
            ),
            replaced("killed-recommender-was-replaced", RECO),
            fallback_engaged(outage, after_app_back=MLFLOW),
            *clients(outage, success=LOST_IN_FLIGHT, latency=RESTARTS),
            fallback_cleared(outage, after_app_back=MLFLOW),
        ],
        [
            scale_to_zero(MLFLOW, "helius_outage_before_kill_seconds"),
            kill_one("kill-one-recommender", RECO),
            await_ready(
                "await-recommender-replacement",
                RECO,
                "helius_cold_start_await_seconds",
                after=t("helius_replacement_hold_seconds"),
            ),
            restore_scale(MLFLOW),
            await_ready("await-mlflow-back", MLFLOW),
        ],
    )


def model_promoted_during_partition() -> Json:
    w = window(FaultKind.PATH, EDGE_RECO_MLFLOW)
    return experiment(
        "A model promoted while the recommenders cannot reach MLflow reaches every pod after",
        "Blackhole the reco-mlflow path (TTL 90 s) under load; while it is cut, promote a new "
        "version of the model in MLflow (reco@champion moves on); then restore the path. "
        "Every recommender falls back during the cut, keeps serving, and converges on the "
        "promoted version within 20 s of the path's return: no pod is left on a stale model.",
        ["mlflow", "network", "model", "staleness"],
        {"reliability": "high", "observability": "medium"},
        "A promotion during a partition converges on every pod",
        [
            fallback_engaged(w),
            *clients(w, latency=MODEL_SWAP),
            fallback_cleared(w),
            converged("every-pod-on-the-promoted-model", "helius_clear_within_seconds", w),
        ],
        [
            cut(
                f"cut-{EDGE_RECO_MLFLOW}",
                EDGE_RECO_MLFLOW,
                PathMode.BLACKHOLE,
                "helius_partition_before_promotion_seconds",
            ),
            action(
                "promote-new-model-version",
                model.promote_model,
                after=t("helius_partition_hold_seconds"),
            ),
            restore_path(EDGE_RECO_MLFLOW, after=SETTLE),
        ],
    )


CATALOGUE: dict[str, Callable[[], Json]] = {
    "mlflow-pod-kill": mlflow_pod_kill,
    "mlflow-outage": mlflow_outage,
    "rds-path-cut": rds_path_cut,
    "az-drain": az_drain,
    "mlflow-latency": mlflow_latency,
    "reco-pod-kill": reco_pod_kill,
    "reco-cold-start-during-outage": reco_cold_start_during_outage,
    "model-promoted-during-partition": model_promoted_during_partition,
}


def render(name: str) -> str:
    """One experiment's file; a step that would fail when run fails here, named."""
    try:
        return json.dumps(CATALOGUE[name](), indent=2) + "\n"
    except (CatalogueError, AttributeError) as exc:  # a misspelt argument, or function
        raise CatalogueError(f"{name}: {exc}") from exc


def files() -> Iterator[tuple[str, str]]:
    """Every generated file (its path below experiments/) and its text."""
    for name in CATALOGUE:
        yield f"{name}.json", render(name)
    for profile, timing in PROFILES.items():
        yield f"profiles/{profile}.json", json.dumps({"configuration": timing}, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file differs")
    parser.add_argument("--dir", type=Path, default=HERE)
    args = parser.parse_args(argv)
    stale = []
    try:
        written = dict(files())
    except CatalogueError as exc:
        print(f"experiments/build.py: {exc}", file=sys.stderr)
        return 1
    for name, text in written.items():
        path = args.dir / name
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        if args.check:
            stale.append(name)
        else:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    extra = sorted(p.name for p in args.dir.glob("*.json") if p.stem not in CATALOGUE)
    if args.check and (stale or extra):
        print(
            f"experiments out of date: {stale + extra}; run python experiments/build.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
