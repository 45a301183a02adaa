"""How long each step of an experiment takes, per target: configuration keys with the local
stack's defaults, and the cluster profile (`experiments/profiles/cluster.json`)."""

from __future__ import annotations

from chaoshelius.catalogue.steps import CatalogueError, placeholder

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

# The service's SLO: configuration keys as the timings
# are (`--var`, or the key in upper case as an environment variable), but the users' to state
# for their service, so no profile sets them. Defaults from the healthy local stack (fresh
# clone, 2026-12-07, at 250 requests/s; docs/experiments.md, "Thresholds"): the largest client
# p99 over any fault and its recovery was 88.5 ms (reco-pod-kill, the replacement starting), the
# largest p50 5.5 ms. 300 ms is 3.4x that p99 and 25 ms 4.5x that p50; a prediction path 30 ms
# slower on every request (the negative control slow-everywhere) puts the p50 past 25 ms,
# however slow the baseline it is compared with.
SETTINGS: dict[str, int] = {
    "helius_slo_p99_ms": 300,
    "helius_slo_p50_ms": 25,
}


def setting(key: str) -> str:
    """An SLO or load setting: `${key}`, which Chaos Toolkit substitutes with its number."""
    if key not in SETTINGS:
        raise CatalogueError(f"{key!r} is not a setting key (SETTINGS)")
    return placeholder(key)


def t(key: str) -> str:
    """A timing value: `${key}`, which Chaos Toolkit substitutes with its number."""
    if key not in TIMING:
        raise CatalogueError(f"{key!r} is not a timing key (TIMING)")
    return placeholder(key)


WARM_UP = t("helius_warm_up_seconds")
SETTLE = t("helius_settle_seconds")  # after a fault is undone: the recovery judged
TTL = t("helius_fault_ttl_seconds")
