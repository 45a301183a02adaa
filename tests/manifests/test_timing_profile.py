"""The cluster timing profile in manifests/README.md is the one the manifests set.

The README derives what the experiments need on a cluster (window lengths, `for:`, holds)
from the scrape interval, the recommender's refresh settings and its liveness probe. Those
numbers are read here from the manifests themselves, so a change to a manifest that the
README (and the experiments' cluster profile) does not follow fails this test.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from k8s_paths import MANIFESTS

README = (MANIFESTS / "README.md").read_text()


def _seconds(value: str) -> int:
    assert value.endswith("s") and value[:-1].isdigit(), value
    return int(value[:-1])


def _reco(path: Path = MANIFESTS / "base/reco.yaml") -> dict[str, Any]:
    [deployment] = [d for d in yaml.safe_load_all(path.read_text()) if d["kind"] == "Deployment"]
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


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
