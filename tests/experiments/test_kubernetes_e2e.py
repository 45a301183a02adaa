"""Every experiment of the catalogue, end to end through the real `chaos` CLI, as
`target=kubernetes` against the fake API server serving the real kind overlay: the method.

No kube-apiserver can run here (k8s_fake_api.py), so the cluster is that fake. Each run is
`chaos run --dry probes` (Chaos Toolkit's own switch: the probes are skipped, every action,
pause and rollback runs) with every timing key at 1 s through the environment, as a user's
`--var-file` would, so the whole catalogue takes seconds. It checks what the verdict tests
(test_kubernetes_verdicts.py, which judge with a real Prometheus and take minutes) do not
look at, per experiment: the in-cluster load is started and stopped through the driver, the
fault really lands on the cluster (pods gone, policies or NetworkChaos created, nodes
cordoned), it is undone, and nothing is left behind (no chaos objects, no cordon, every
Deployment at its replicas, the load generator at 0, no pod outside the namespace touched).
MLflow's REST API, which `promote_model` calls, is a stub (mlflow_stub.py) that records the
promotion.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.k8s_fake_api import ZONE, FakeKubeAPI, serve, write_kubeconfig
from support.mlflow_stub import Registry, serve_registry

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((ROOT / "experiments").glob("*.json"))
NS = "helius"
CONTEXT = "kind-helius"
FAULT_ACTIONS = {"kill_pods", "scale_app", "cut_path", "drain_zone", "promote_model"}


@pytest.fixture
def mlflow() -> Iterator[tuple[Registry, str]]:
    with serve_registry() as served:
        yield served


def _short_timing(experiment: dict[str, Any]) -> dict[str, str]:
    """Every timing key of the experiment at 1 s (TTLs at 120 s), as environment variables."""
    keys = [k for k in experiment["configuration"] if k.startswith("helius_") and "_seconds" in k]
    return {k.upper(): ("120" if k == "helius_fault_ttl_seconds" else "1") for k in keys}


def _clean(cluster: FakeKubeAPI) -> list[str]:
    """What a run left behind on the cluster (nothing, when the undo worked)."""
    left: list[str] = []
    with cluster.lock:
        cluster.settle()
        left += [f"policy {k}" for k in cluster.policies if k[1].startswith("helius-chaos-")]
        left += [f"networkchaos {k}" for k in cluster.chaos]
        for name, node in cluster.nodes.items():
            if node.get("spec", {}).get("unschedulable"):
                left.append(f"node {name} cordoned")
        for (ns, name), deploy in cluster.deployments.items():
            want = 0 if name.startswith("loadgen-") else None
            replicas = deploy["spec"].get("replicas")
            if want is not None and replicas != want:
                left.append(f"{ns}/{name} at {replicas} replicas")
            if "helius.chaos/original-replicas" in deploy["metadata"].get("annotations", {}):
                left.append(f"{ns}/{name} still annotated as scaled by a fault")
    return left


def _run(
    path: Path,
    tmp_path: Path,
    cluster: FakeKubeAPI,
    mlflow_url: str,
    chaos_args: tuple[str, ...] = (),
) -> tuple[dict[str, Any], str, str]:
    """`chaos run --dry probes` of `path` against the fake: (journal, stdout, log tail)."""
    chaos = shutil.which("chaos") or str(Path(sys.executable).with_name("chaos"))
    server, url = serve(cluster)
    experiment = json.loads(path.read_text())
    env = {
        **os.environ,
        "KUBECONFIG": str(write_kubeconfig(tmp_path / "kubeconfig", {CONTEXT: url}, CONTEXT)),
        "HELIUS_TARGET": "kubernetes",
        "HELIUS_KUBE_CONTEXT": CONTEXT,
        "HELIUS_KUBE_ALLOWED_CONTEXTS": CONTEXT,
        "HELIUS_KUBE_ALLOWED_SERVERS": f"{CONTEXT}={url}",
        "HELIUS_PROMETHEUS_URL": "http://127.0.0.1:1",  # no probe runs (--dry probes)
        "HELIUS_MLFLOW_URL": mlflow_url,
        "HELIUS_RUN_DIR": str(tmp_path / "run"),
        "HELIUS_LOAD_RATE": "100",
        "HELIUS_SAFEGUARDS": "off",  # its Prometheus queries have nothing to read here
        **_short_timing(experiment),
    }
    for name in ("KUBERNETES_CONTEXT", "KUBERNETES_HOST", "CHAOSTOOLKIT_IN_POD", "HELIUS_ZONE"):
        env.pop(name, None)
    journal_path = tmp_path / "journal.json"
    try:
        done = subprocess.run(  # noqa: S603  argv list: the chaos CLI
            [
                chaos,
                "--log-file",
                str(tmp_path / "chaos.log"),
                "run",
                "--dry",
                "probes",
                *chaos_args,
                "--journal-path",
                str(journal_path),
                str(path),
            ],  # fmt: skip
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    finally:
        server.shutdown()
        server.server_close()
    log = (tmp_path / "chaos.log").read_text()[-3000:]
    return json.loads(journal_path.read_text()), done.stdout[-2000:], log


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_the_experiment_runs_end_to_end_on_target_kubernetes(
    path: Path, tmp_path: Path, mlflow: tuple[Registry, str]
) -> None:
    registry, mlflow_url = mlflow
    cluster = FakeKubeAPI.from_overlay(grace_seconds=0.2, ready_seconds=0.2)
    cluster.chaos_mesh = True  # mlflow-latency's NetworkChaos (the walk-through installs it)
    replicas = {
        key: d["spec"].get("replicas") for key, d in cluster.deployments.items() if key[0] == NS
    }
    system_before = {
        (p["metadata"]["namespace"], p["metadata"]["name"])
        for p in cluster.pods.values()
        if p["metadata"]["namespace"] != NS
    }
    journal, stdout, log = _run(path, tmp_path, cluster, mlflow_url)
    assert journal["status"] == "completed", (stdout, log)
    steps = journal["run"] + journal.get("rollbacks", [])
    failed = [
        (s["activity"]["name"], s.get("exception")) for s in steps if s["status"] != "succeeded"
    ]
    assert not failed, (failed, log)

    outputs = {s["activity"]["name"]: s.get("output") for s in journal["run"]}
    started = outputs["start-load"]
    assert started["target"] == "kubernetes" and started["processes"] >= 1, started
    faults = [s for s in journal["run"] if s["activity"]["provider"].get("func") in FAULT_ACTIONS]
    assert faults, "no fault action ran"
    for step in faults:
        assert step["output"], (step["activity"]["name"], step["output"])  # it did something
    if any(s["activity"]["provider"]["func"] == "promote_model" for s in faults):
        assert registry.promoted and registry.promoted[-1]["version"] == "2"

    assert _clean(cluster) == []
    with cluster.lock:
        cluster.settle()
        for key, want in replicas.items():
            if want:
                assert cluster.deployments[key]["spec"]["replicas"] == want, key
        system_after = {
            (p["metadata"]["namespace"], p["metadata"]["name"])
            for p in cluster.pods.values()
            if p["metadata"]["namespace"] != NS
        }
    assert system_after == system_before  # nothing outside the namespace was touched


# ---------------------------------------------------------------- a cluster's own zone names
EKS_ZONES = {"zone-a": "eu-west-1a", "zone-b": "eu-west-1b", "zone-c": "eu-west-1c"}
ZONE_PINNED = ["az-drain", "mlflow-pod-kill", "reco-pod-kill", "reco-cold-start-during-outage"]


def relabel_zones(cluster: FakeKubeAPI, renamed: dict[str, str]) -> None:
    """The kind overlay as on a cluster whose zones have other names (EKS: eu-west-1a ...):
    the nodes' zone labels, and the zone pins of the pod templates (nodeSelector, node
    affinity: the overlay's PostgreSQL and MinIO stay in their zone), renamed."""

    def rename(obj: Any) -> None:
        if isinstance(obj, dict):
            if obj.get("key") == ZONE and isinstance(obj.get("values"), list):
                obj["values"] = [renamed.get(v, v) for v in obj["values"]]
            selector = obj.get("nodeSelector")
            if isinstance(selector, dict) and selector.get(ZONE) in renamed:
                selector[ZONE] = renamed[selector[ZONE]]
            for value in obj.values():
                rename(value)
        elif isinstance(obj, list):
            for value in obj:
                rename(value)

    with cluster.lock:
        for node in cluster.nodes.values():
            labels = node["metadata"].setdefault("labels", {})
            if labels.get(ZONE) in renamed:
                labels[ZONE] = renamed[labels[ZONE]]
        for objects in (cluster.deployments, cluster.statefulsets, cluster.pods):
            rename(list(objects.values()))


@pytest.mark.parametrize("name", ZONE_PINNED)
def test_a_zone_pinned_experiment_hits_the_zone_it_is_given(
    name: str, tmp_path: Path, mlflow: tuple[Registry, str]
) -> None:
    """On nodes labelled eu-west-1a/b/c (EKS), `chaos run --var helius_zone=eu-west-1a`: the
    pods killed were in eu-west-1a, the drain cordoned exactly the eu-west-1a nodes and evicted
    only pods there, and nothing is left behind. (Before: drain_zone refused any zone but
    zone-a|b|c, and the kills were pinned to zone-a, where no pod runs on such a cluster.)"""
    _, mlflow_url = mlflow
    cluster = FakeKubeAPI.from_overlay(grace_seconds=0.2, ready_seconds=0.2)
    relabel_zones(cluster, EKS_ZONES)
    with cluster.lock:
        zone_of = {p["metadata"]["name"]: cluster.zone_of(p) for p in cluster.pods.values()}
        labels = {n: o["metadata"].get("labels", {}) for n, o in cluster.nodes.items()}
    in_zone = {n for n, node_labels in labels.items() if node_labels.get(ZONE) == "eu-west-1a"}
    assert in_zone and not any(z in EKS_ZONES for z in zone_of.values())
    path = ROOT / "experiments" / f"{name}.json"
    journal, stdout, log = _run(
        path, tmp_path, cluster, mlflow_url, ("--var", "helius_zone=eu-west-1a")
    )
    steps = journal["run"] + journal.get("rollbacks", [])
    failed = [
        (s["activity"]["name"], s.get("exception")) for s in steps if s["status"] != "succeeded"
    ]
    assert journal["status"] == "completed" and not failed, (failed, stdout, log)

    pinned = {"kill_pods", "drain_zone"}
    hit = [s for s in journal["run"] if s["activity"]["provider"]["func"] in pinned]
    assert hit, "no zone-pinned fault ran"
    for step in hit:
        assert step["activity"]["provider"]["arguments"]["zone"] == "${helius_zone}"
        if step["activity"]["provider"]["func"] == "kill_pods":
            killed = step["output"]["killed"]
            assert killed and {zone_of.get(n) for n in killed} == {"eu-west-1a"}, killed
    if name == "az-drain":
        cordoned = {
            r.path.rsplit("/", 1)[-1]
            for r in cluster.sent("PATCH", "/nodes/")
            if (r.body.get("spec") or {}).get("unschedulable") is True
        }
        assert cordoned == in_zone
        evicted = [r.path.split("/")[-2] for r in cluster.sent("POST", "/eviction$")]
        assert evicted and {zone_of.get(n) for n in evicted} == {"eu-west-1a"}, evicted
    assert _clean(cluster) == []
