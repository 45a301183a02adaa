"""The cluster timing profile in manifests/README.md is the one the manifests set.

The README derives what the experiments need on a cluster (window lengths, `for:`, holds)
from the scrape interval, the recommender's refresh settings and its liveness probe. Those
numbers are read here from the manifests themselves, so a change to a manifest that the
README (and the experiments' cluster profile) does not follow fails this test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from k8s_paths import MANIFESTS

README = (MANIFESTS / "README.md").read_text()


def _seconds(value: str) -> int:
    assert value.endswith("s") and value[:-1].isdigit(), value
    return int(value[:-1])


def _container(path: Path) -> dict[str, Any]:
    [deployment] = [d for d in yaml.safe_load_all(path.read_text()) if d["kind"] == "Deployment"]
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def _reco() -> dict[str, Any]:
    return _container(MANIFESTS / "base/reco.yaml")


def test_the_readme_states_the_manifests_timing() -> None:
    config = yaml.safe_load((MANIFESTS / "monitoring/prometheus/prometheus.yml").read_text())
    scrape = _seconds(config["global"]["scrape_interval"])
    evaluation = _seconds(config["global"]["evaluation_interval"])
    reco = _reco()
    env = {e["name"]: e.get("value") for e in reco["env"]}
    refresh = int(env["HELIUS_REFRESH_INTERVAL_SECONDS"])
    deadline = int(env["HELIUS_REFRESH_DEADLINE_SECONDS"])
    live = reco["livenessProbe"]
    budget = live["periodSeconds"] * live["failureThreshold"] + live["timeoutSeconds"]

    assert f"| {scrape} s / {evaluation} s |" in README
    assert f"| {refresh} s / {deadline} s |" in README
    assert (
        f"{live['periodSeconds']} s × {live['failureThreshold']} + {live['timeoutSeconds']} s"
        f" = {budget} s" in README
    )
    assert f"`[{4 * scrape}s]`" in README  # 4 samples per rate window
    assert f"= {refresh + deadline + scrape + evaluation} s" in README  # fallback within
    assert f"= {refresh + scrape + evaluation} s" in README  # back to normal within
    assert f"liveness budget ({budget} s)" in README


def test_a_cluster_window_holds_enough_samples() -> None:
    """The rule windows ([30s], [1m]) hold at least 4 samples at the cluster's scrape."""
    config = yaml.safe_load((MANIFESTS / "monitoring/prometheus/prometheus.yml").read_text())
    scrape = _seconds(config["global"]["scrape_interval"])
    rules = (MANIFESTS / "monitoring/rules/helius-alerts.yml").read_text()
    windows = {int(w) for w in re.findall(r"\[(\d+)s\]", rules)}
    assert windows and min(windows) >= 4 * scrape, (windows, scrape)


def test_the_experiments_cluster_profile_meets_the_manifests_minimums() -> None:
    """experiments/profiles/cluster.json (`chaos run --var-file`) against what the manifests
    imply: a change to the scrape, the refresh or the liveness probe that the profile does
    not follow fails here."""
    config = yaml.safe_load((MANIFESTS / "monitoring/prometheus/prometheus.yml").read_text())
    scrape = _seconds(config["global"]["scrape_interval"])
    evaluation = _seconds(config["global"]["evaluation_interval"])
    env = {e["name"]: e.get("value") for e in _reco()["env"]}
    refresh = int(env["HELIUS_REFRESH_INTERVAL_SECONDS"])
    deadline = int(env["HELIUS_REFRESH_DEADLINE_SECONDS"])
    live = _reco()["livenessProbe"]
    budget = live["periodSeconds"] * live["failureThreshold"] + live["timeoutSeconds"]
    rules = yaml.safe_load((MANIFESTS / "monitoring/rules/helius-alerts.yml").read_text())
    longest_for = max(_seconds(r["for"]) for g in rules["groups"] for r in g["rules"] if "for" in r)
    profile = MANIFESTS.parent / "experiments" / "profiles" / "cluster.json"
    timing = json.loads(profile.read_text())["configuration"]

    fallback = refresh + deadline + scrape + evaluation
    assert timing["helius_fallback_within_seconds"] >= fallback
    assert timing["helius_clear_within_seconds"] >= refresh + scrape + evaluation
    assert timing["helius_alert_within_seconds"] >= fallback + longest_for + scrape + evaluation
    assert timing["helius_refresh_grace_seconds"] >= fallback
    assert timing["helius_baseline_seconds"] >= 4 * scrape
    assert timing["helius_short_window_seconds"] >= 4 * scrape
    assert timing["helius_outage_hold_seconds"] > budget + refresh  # a liveness tie shows
    for hold in ("cut", "drain", "latency", "partition"):
        assert timing[f"helius_{hold}_hold_seconds"] > fallback, hold
    assert timing["helius_fault_ttl_seconds"] >= 2 * timing["helius_outage_hold_seconds"]
    assert timing["helius_settle_seconds"] >= timing["helius_clear_within_seconds"]

    # pods back: a replacement recommender starts (startup probe), turns ready (readiness
    # probe), refreshes once, and is scraped and evaluated before "back" can be seen
    startup, ready = _reco()["startupProbe"], _reco()["readinessProbe"]
    reco_back = startup["periodSeconds"] + ready["periodSeconds"] + refresh + scrape + evaluation
    for key in ("reco_back", "cold_start", "zone_back"):
        assert timing[f"helius_{key}_within_seconds"] >= reco_back, key
    mlflow = _container(MANIFESTS / "base/mlflow.yaml")
    mlflow_start = (
        mlflow["startupProbe"]["periodSeconds"] * mlflow["startupProbe"]["failureThreshold"]
    )
    assert timing["helius_mlflow_back_within_seconds"] >= mlflow_start + scrape + evaluation
    # every await outlasts the deadline the hypothesis then judges
    assert timing["helius_reco_await_seconds"] > timing["helius_reco_back_within_seconds"]
    assert timing["helius_cold_start_await_seconds"] > timing["helius_cold_start_within_seconds"]
    for key in ("zone_back", "mlflow_back"):
        assert timing["helius_await_timeout_seconds"] > timing[f"helius_{key}_within_seconds"]
    # inside a fault: Prometheus has seen MLflow go before the kill; a refresh has failed
    # before the promotion
    assert timing["helius_outage_before_kill_seconds"] >= scrape + evaluation
    assert timing["helius_partition_before_promotion_seconds"] >= refresh + deadline
    # the cold start's MLflow outage (the longest fault) is over before its TTL
    cold_start = (
        timing["helius_outage_before_kill_seconds"]
        + timing["helius_cold_start_await_seconds"]
        + timing["helius_replacement_hold_seconds"]
    )
    assert timing["helius_fault_ttl_seconds"] > cold_start


def test_every_cluster_duration_is_at_least_the_local_one() -> None:
    """A cluster scrapes, refreshes and starts pods slower than the local stack, never faster
    (the local values are the experiments' configuration defaults)."""
    profile = MANIFESTS.parent / "experiments" / "profiles" / "cluster.json"
    timing = json.loads(profile.read_text())["configuration"]
    local: dict[str, int] = {}
    for path in sorted((MANIFESTS.parent / "experiments").glob("*.json")):
        for key, entry in json.loads(path.read_text())["configuration"].items():
            if key in timing:
                local[key] = entry["default"]
    assert set(local) == set(timing)
    shorter = {k: (v, local[k]) for k, v in timing.items() if v < local[k]}
    assert not shorter, shorter
