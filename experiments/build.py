"""Write the experiment catalogue (experiments/*.json) from one description.

The JSON files are what users read, edit and run (`chaos run experiments/x.json`); this script
keeps their shared parts (configuration keys, the before/after checks, load, rollbacks,
controls) identical, so a fix lands in every experiment at once. tests/experiments checks that
the committed files are exactly what this script writes.

    python experiments/build.py           # rewrite experiments/*.json
    python experiments/build.py --check   # exit 1 if a file differs (CI)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RECO, MLFLOW = "helius-reco", "mlflow"
REPLICAS = 3  # every app of the stack runs 3 replicas, one per zone
# The zone of every zone-pinned step: a configuration key, so a cluster's own zone names work
# (`--var helius_zone=eu-west-1a`, or HELIUS_ZONE); the local stack's and the kind overlay's
# zone-a by default.
ZONE_KEY, DEFAULT_ZONE = "helius_zone", "zone-a"
ZONE = "${" + ZONE_KEY + "}"
OK = {"type": "jsonpath", "path": "$.ok", "expect": True}

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
    assert key in TIMING, key  # noqa: S101  a typo check while generating the catalogue
    return "${" + key + "}"


WARM_UP = t("helius_warm_up_seconds")

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

Json = dict[str, Any]


def _env(env: str, default: Any, **extra: Any) -> Json:
    return {"type": "env", "key": env, "default": default, **extra}


CONFIGURATION: Json = {
    "target": _env("HELIUS_TARGET", "local"),
    "helius_control_url": _env("HELIUS_CONTROL_URL", "http://127.0.0.1:17000"),
    "prometheus_base_url": _env("HELIUS_PROMETHEUS_URL", "http://127.0.0.1:17090"),
    "helius_reco_url": _env("HELIUS_RECO_URL", "http://127.0.0.1:17080"),
    "helius_mlflow_url": _env("HELIUS_MLFLOW_URL", "http://127.0.0.1:17050"),
    "helius_loadgen_metrics_port": _env("HELIUS_LOADGEN_METRICS_PORT", 17089, env_var_type="int"),
    "helius_run_dir": _env("HELIUS_RUN_DIR", "reports/runs/latest"),
    "kube_namespace": _env("HELIUS_KUBE_NAMESPACE", "helius"),
    "kube_allowed_contexts": _env("HELIUS_KUBE_ALLOWED_CONTEXTS", ""),
    # context=server-url or context=sha256:<CA fingerprint>: the cluster a context must be
    "kube_allowed_servers": _env("HELIUS_KUBE_ALLOWED_SERVERS", ""),
    "kube_context": _env("HELIUS_KUBE_CONTEXT", ""),
    # the RDS subnet group's CIDRs, comma-separated (one per zone it spans)
    "kube_rds_cidr": _env("HELIUS_KUBE_RDS_CIDR", ""),
    # the zone the zone-pinned experiments hit (a kill in it, its drain): a value of the nodes'
    # topology.kubernetes.io/zone label on a cluster (eu-west-1a on EKS), zone-a|b|c locally
    ZONE_KEY: _env("HELIUS_ZONE", DEFAULT_ZONE),
    **{key: _env(key.upper(), value, env_var_type="int") for key, value in TIMING.items()},
}


def _provider(module: str, func: str, **arguments: Any) -> Json:
    return {
        "type": "python",
        "module": f"chaoshelius.{module}",
        "func": func,
        "arguments": arguments,
    }


def probe(name: str, module: str, func: str, **arguments: Any) -> Json:
    return {
        "type": "probe",
        "name": name,
        "provider": _provider(module, func, **arguments),
        "tolerance": OK,
    }


def action(
    name: str, module: str, func: str, after: float | str | None = None, **arguments: Any
) -> Json:
    step: Json = {"type": "action", "name": name, "provider": _provider(module, func, **arguments)}
    if after:
        step["pauses"] = {"after": after}
    return step


# ---------------------------------------------------------------- shared blocks
def steady_now() -> list[Json]:
    """Checked before the fault (a broken start fails the run) and again after it."""
    return [
        probe("recommender-replicas-ready", "pods.probes", "pods_ready", app=RECO, min_ready=3),
        probe("mlflow-replicas-ready", "pods.probes", "pods_ready", app=MLFLOW, min_ready=3),
        probe(
            "recommender-not-in-fallback-now",
            "slo.probes",
            "query_value",
            query="max(reco_engine_in_fallback_mode)",
            max_value=0,
        ),
    ]


def clients(window: Json, success: Json | None = None, latency: Json | None = None) -> list[Json]:
    """What users saw over the fault and its recovery (every experiment)."""
    return [
        probe(
            "clients-success-slo",
            "slo.probes",
            "client_success_ratio",
            **{**SUCCESS, **(success or {})},
            **window,
        ),
        probe(
            "clients-latency-slo",
            "slo.probes",
            "latency_p99_ratio",
            **{**LATENCY, **(latency or {})},
            **window,
        ),
    ]


def start_load(after: float | str = WARM_UP, **load: Any) -> Json:
    return action("start-load", "load.actions", "start_load", after=after, **{**LOAD, **load})


def stop_load() -> Json:
    return action("stop-load", "load.actions", "stop_load")


def no_restart(app: str, window: Json, name: str = "no-recommender-restarted") -> Json:
    return probe(name, "pods.probes", "pods_survived", app=app, **window)


def experiment(
    title: str,
    description: str,
    tags: list[str],
    contributions: Json,
    hypothesis_title: str,
    checks: list[Json],
    method: list[Json],
    rollbacks: list[Json],
    configuration: Json | None = None,
) -> Json:
    return {
        "version": "1.0.0",
        "title": title,
        "description": description,
        "tags": ["helius", *tags],
        "contributions": contributions,
        "configuration": {**CONFIGURATION, **(configuration or {})},
        "controls": [
            {
                "name": "judge-every-probe",
                "provider": {"type": "python", "module": "chaoshelius.slo.judge_all"},
            },
            # no fault into a stack that is not steady (alerts, fallback) when the fault is due
            {
                "name": "helius-steady-gate",
                "provider": {
                    "type": "python",
                    "module": "chaoshelius.controls.steady_gate",
                    "arguments": {"timeout_seconds": 60},
                },
            },
            # the journal in the run dir, for `chaoshelius report build` after a plain `chaos run`
            {
                "name": "helius-journal",
                "provider": {"type": "python", "module": "chaoshelius.controls.journal"},
            },
            # stop conditions: abort the method (rollbacks play) when users are hurt past these
            {
                "name": "helius-safeguards",
                "provider": {
                    "type": "python",
                    "module": "chaoshelius.controls.safeguards",
                    "arguments": {
                        "min_success_ratio": 0.5,
                        "max_p99_seconds": 5.0,
                        "window_seconds": 10,
                        "consecutive": 2,
                    },
                },
            },
        ],
        "runtime": {"rollbacks": {"strategy": "always"}},
        "steady-state-hypothesis": {"title": hypothesis_title, "probes": steady_now() + checks},
        "method": method,
        "rollbacks": [*rollbacks, stop_load()],
    }


# ---------------------------------------------------------------- the catalogue
def mlflow_pod_kill() -> Json:
    w = {"kind": "pod-kill", "target": MLFLOW}
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
            probe("killed-mlflow-pod-was-replaced", "pods.probes", "pods_replaced", app=MLFLOW),
            probe(
                "no-fallback-during-the-kill",
                "slo.probes",
                "fallback_never_engaged",
                grace_seconds=t("helius_refresh_grace_seconds"),
                **w,
            ),
            *clients(w, latency=RESTARTS),
            probe(
                "mlflow-replicas-back",
                "slo.probes",
                "replicas_recovered_within",
                app=MLFLOW,
                seconds=t("helius_mlflow_back_within_seconds"),
                **w,
            ),
            no_restart(RECO, w),
        ],
        [
            start_load(),
            action(
                "kill-one-mlflow-pod",
                "pods.actions",
                "kill_pods",
                app=MLFLOW,
                count=1,
                zone=ZONE,
            ),
            action(
                "await-mlflow-replacement",
                "pods.actions",
                "await_pods_ready",
                after=t("helius_settle_seconds"),
                app=MLFLOW,
                timeout_seconds=t("helius_await_timeout_seconds"),
            ),
            stop_load(),
        ],
        [],
    )


def mlflow_outage() -> Json:
    w = {"kind": "scale", "target": MLFLOW}
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
            probe(
                "mlflow-was-really-down",
                "slo.probes",
                "targets_went_down",
                app=MLFLOW,
                max_up=0,
                **w,
            ),
            probe(
                "fallback-engaged-on-every-pod",
                "slo.probes",
                "fallback_engaged_within",
                seconds=t("helius_fallback_within_seconds"),
                after_app_back=MLFLOW,
                **w,
            ),
            probe("predictions-continued", "slo.probes", "client_success_ratio", **SUCCESS, **w),
            clients(w, latency=RESTARTS)[1],
            probe(
                "fallback-alert-fired",
                "slo.probes",
                "alert_fired",
                alertname="RecoEngineInFallback",
                within_seconds=t("helius_alert_within_seconds"),
                **w,
            ),
            probe(
                "fallback-cleared-on-every-pod",
                "slo.probes",
                "fallback_cleared_within",
                seconds=t("helius_clear_within_seconds"),
                after_app_back=MLFLOW,
                **w,
            ),
            probe(
                "every-pod-on-the-registry-model",
                "slo.probes",
                "models_converged_within",
                seconds=t("helius_mlflow_back_within_seconds"),
                **w,
            ),
            no_restart(RECO, w),
        ],
        [
            start_load(),
            action(
                "scale-mlflow-to-zero",
                "pods.actions",
                "scale_app",
                after=t("helius_outage_hold_seconds"),
                app=MLFLOW,
                replicas=0,
                ttl_seconds=t("helius_fault_ttl_seconds"),
            ),
            action("restore-mlflow", "pods.actions", "restore_scale", app=MLFLOW),
            action(
                "await-mlflow-back",
                "pods.actions",
                "await_pods_ready",
                after=t("helius_settle_seconds"),
                app=MLFLOW,
                timeout_seconds=t("helius_await_timeout_seconds"),
            ),
            stop_load(),
        ],
        [action("restore-mlflow", "pods.actions", "restore_scale", app=MLFLOW)],
    )


def rds_path_cut() -> Json:
    w = {"kind": "path", "target": "mlflow-rds"}
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
                "slo.probes",
                "counter_grew",
                selector='reco_engine_refresh_failures_total{reason!="disabled"}',
                min_increase=1,
                **w,
            ),
            probe(
                "fallback-engaged-on-every-pod",
                "slo.probes",
                "fallback_engaged_within",
                seconds=t("helius_fallback_within_seconds"),
                **w,
            ),
            probe("predictions-continued", "slo.probes", "client_success_ratio", **SUCCESS, **w),
            clients(w)[1],
            probe(
                "mlflow-degraded-alert-fired",
                "slo.probes",
                "alert_fired",
                alertname="MLflowDegraded",
                within_seconds=t("helius_alert_within_seconds"),
                **w,
            ),
            probe(
                "fallback-alert-fired",
                "slo.probes",
                "alert_fired",
                alertname="RecoEngineInFallback",
                within_seconds=t("helius_alert_within_seconds"),
                **w,
            ),
            probe(
                "fallback-cleared-on-every-pod",
                "slo.probes",
                "fallback_cleared_within",
                seconds=t("helius_clear_within_seconds"),
                **w,
            ),
            probe(
                "mlflow-recovered-without-restart",
                "network.probes",
                "source_pods_unchanged",
                edge="mlflow-rds",
            ),
            no_restart(RECO, w),
        ],
        [
            start_load(),
            action(
                "blackhole-mlflow-rds",
                "network.actions",
                "cut_path",
                after=t("helius_cut_hold_seconds"),
                edge="mlflow-rds",
                mode="blackhole",
                ttl_seconds=t("helius_fault_ttl_seconds"),
            ),
            action(
                "restore-mlflow-rds",
                "network.actions",
                "restore_path",
                after=t("helius_settle_seconds"),
                edge="mlflow-rds",
            ),
            stop_load(),
        ],
        [action("restore-mlflow-rds", "network.actions", "restore_path", edge="mlflow-rds")],
    )


def az_drain() -> Json:
    zone = ZONE
    w = {"kind": "drain", "target": zone}
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
            probe(
                "drained-zone-recommenders-were-down",
                "slo.probes",
                "targets_went_down",
                app=RECO,
                zone=zone,
                max_up=0,
                **w,
            ),
            # half of what the stack sustains (measured now): losing a third of the
            # recommenders is a real stress. Availability must hold, the median may triple,
            # the tail may not pass 3x + 1 s: the zone's pods restarting on the same two
            # cores put p99 at 433-645 ms whatever the baseline (41-147 ms; three CI runs)
            # The median under a zone loss has a heavy tail on two shared cores (the zone's
            # MLflow and recommender restart beside the survivors): p50 x1.2-x2.1 in 11 of 13
            # healthy runs, x3.7 (15 ms) and x7.9 (33 ms on a 4 ms baseline) in two (campaign of
            # 2026-11-30): x3 + 25 ms. A slower path on every request (+40 ms) still fails it.
            *clients(
                w,
                latency={
                    "max_ratio": 3.0,
                    "noise_seconds": 1.0,
                    "p50_max_ratio": 3.0,
                    "p50_noise_seconds": 0.025,
                },
            ),
            probe(
                "no-fallback",
                "slo.probes",
                "fallback_never_engaged",
                grace_seconds=t("helius_refresh_grace_seconds"),
                **w,
            ),
            probe(
                "recommenders-back-in-every-zone",
                "slo.probes",
                "replicas_recovered_within",
                app=RECO,
                seconds=t("helius_zone_back_within_seconds"),
                per_zone=True,
                **w,
            ),
        ],
        [
            start_load(capacity_fraction=0.5),
            action(
                "drain-zone",
                "zones.actions",
                "drain_zone",
                after=t("helius_drain_hold_seconds"),
                zone=zone,
                ttl_seconds=t("helius_fault_ttl_seconds"),
            ),
            action("uncordon-zone", "zones.actions", "uncordon_zone", zone=zone),
            action(
                "await-recommenders-back",
                "pods.actions",
                "await_pods_ready",
                app=RECO,
                timeout_seconds=t("helius_await_timeout_seconds"),
                per_zone=True,
            ),
            action(
                "await-mlflow-back",
                "pods.actions",
                "await_pods_ready",
                after=t("helius_settle_seconds"),
                app=MLFLOW,
                timeout_seconds=t("helius_await_timeout_seconds"),
            ),
            stop_load(),
        ],
        [action("uncordon-zone", "zones.actions", "uncordon_zone", zone=zone)],
    )


def mlflow_latency() -> Json:
    w = {"kind": "path", "target": "reco-mlflow"}
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
            start_load(),
            action(
                "slow-reco-mlflow",
                "network.actions",
                "cut_path",
                after=t("helius_latency_hold_seconds"),
                edge="reco-mlflow",
                mode="latency",
                latency_ms=800,
                ttl_seconds=t("helius_fault_ttl_seconds"),
            ),
            action(
                "restore-reco-mlflow",
                "network.actions",
                "restore_path",
                after=t("helius_settle_seconds"),
                edge="reco-mlflow",
            ),
            stop_load(),
        ],
        [action("restore-reco-mlflow", "network.actions", "restore_path", edge="reco-mlflow")],
    )


def reco_pod_kill() -> Json:
    w = {"kind": "pod-kill", "target": RECO}
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
            probe("killed-recommender-was-replaced", "pods.probes", "pods_replaced", app=RECO),
            *clients(w, success={"min_ratio": 0.98, "min_worst_ratio": 0.8}, latency=RESTARTS),
            probe(
                "recommenders-back",
                "slo.probes",
                "replicas_recovered_within",
                app=RECO,
                seconds=t("helius_reco_back_within_seconds"),
                **w,
            ),
        ],
        [
            start_load(),
            action(
                "kill-one-recommender",
                "pods.actions",
                "kill_pods",
                app=RECO,
                count=1,
                zone=ZONE,
            ),
            action(
                "await-recommender-replacement",
                "pods.actions",
                "await_pods_ready",
                after=t("helius_settle_seconds"),
                app=RECO,
                timeout_seconds=t("helius_reco_await_seconds"),
            ),
            stop_load(),
        ],
        [],
    )


def reco_cold_start_during_outage() -> Json:
    outage = {"kind": "scale", "target": MLFLOW}
    kill = {"kind": "pod-kill", "target": RECO}
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
            probe(
                "mlflow-was-really-down",
                "slo.probes",
                "targets_went_down",
                app=MLFLOW,
                max_up=0,
                **outage,
            ),
            probe(
                "replacement-serving-during-outage",
                "slo.probes",
                "replicas_recovered_within",
                app=RECO,
                seconds=t("helius_cold_start_within_seconds"),
                **kill,
            ),
            probe("killed-recommender-was-replaced", "pods.probes", "pods_replaced", app=RECO),
            probe(
                "fallback-engaged-on-every-pod",
                "slo.probes",
                "fallback_engaged_within",
                seconds=t("helius_fallback_within_seconds"),
                after_app_back=MLFLOW,
                **outage,
            ),
            *clients(outage, success={"min_ratio": 0.98, "min_worst_ratio": 0.8}, latency=RESTARTS),
            probe(
                "fallback-cleared-on-every-pod",
                "slo.probes",
                "fallback_cleared_within",
                seconds=t("helius_clear_within_seconds"),
                after_app_back=MLFLOW,
                **outage,
            ),
        ],
        [
            start_load(),
            action(
                "scale-mlflow-to-zero",
                "pods.actions",
                "scale_app",
                after=t("helius_outage_before_kill_seconds"),
                app=MLFLOW,
                replicas=0,
                ttl_seconds=t("helius_fault_ttl_seconds"),
            ),
            action(
                "kill-one-recommender",
                "pods.actions",
                "kill_pods",
                app=RECO,
                count=1,
                zone=ZONE,
            ),
            action(
                "await-recommender-replacement",
                "pods.actions",
                "await_pods_ready",
                after=t("helius_replacement_hold_seconds"),
                app=RECO,
                timeout_seconds=t("helius_cold_start_await_seconds"),
            ),
            action("restore-mlflow", "pods.actions", "restore_scale", app=MLFLOW),
            action(
                "await-mlflow-back",
                "pods.actions",
                "await_pods_ready",
                after=t("helius_settle_seconds"),
                app=MLFLOW,
                timeout_seconds=t("helius_await_timeout_seconds"),
            ),
            stop_load(),
        ],
        [action("restore-mlflow", "pods.actions", "restore_scale", app=MLFLOW)],
    )


def model_promoted_during_partition() -> Json:
    w = {"kind": "path", "target": "reco-mlflow"}
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
            probe(
                "fallback-engaged-on-every-pod",
                "slo.probes",
                "fallback_engaged_within",
                seconds=t("helius_fallback_within_seconds"),
                **w,
            ),
            *clients(w, latency=MODEL_SWAP),
            probe(
                "fallback-cleared-on-every-pod",
                "slo.probes",
                "fallback_cleared_within",
                seconds=t("helius_clear_within_seconds"),
                **w,
            ),
            probe(
                "every-pod-on-the-promoted-model",
                "slo.probes",
                "models_converged_within",
                seconds=t("helius_clear_within_seconds"),
                **w,
            ),
        ],
        [
            start_load(),
            action(
                "cut-reco-mlflow",
                "network.actions",
                "cut_path",
                after=t("helius_partition_before_promotion_seconds"),
                edge="reco-mlflow",
                mode="blackhole",
                ttl_seconds=t("helius_fault_ttl_seconds"),
            ),
            action(
                "promote-new-model-version",
                "model.actions",
                "promote_model",
                after=t("helius_partition_hold_seconds"),
            ),
            action(
                "restore-reco-mlflow",
                "network.actions",
                "restore_path",
                after=t("helius_settle_seconds"),
                edge="reco-mlflow",
            ),
            stop_load(),
        ],
        [action("restore-reco-mlflow", "network.actions", "restore_path", edge="reco-mlflow")],
    )


CATALOGUE = {
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
    return json.dumps(CATALOGUE[name](), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file differs")
    parser.add_argument("--dir", type=Path, default=HERE)
    args = parser.parse_args(argv)
    stale = []
    for name in CATALOGUE:
        path = args.dir / f"{name}.json"
        text = render(name)
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        if args.check:
            stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    for profile, timing in PROFILES.items():
        path = args.dir / "profiles" / f"{profile}.json"
        text = json.dumps({"configuration": timing}, indent=2) + "\n"
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        if args.check:
            stale.append(f"profiles/{path.name}")
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
