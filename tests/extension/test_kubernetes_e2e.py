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
from k8s_fake_api import FakeKubeAPI, serve, write_kubeconfig
from mlflow_stub import Registry, serve_registry

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


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_the_experiment_runs_end_to_end_on_target_kubernetes(
    path: Path, tmp_path: Path, mlflow: tuple[Registry, str]
) -> None:
    registry, mlflow_url = mlflow
    chaos = shutil.which("chaos") or str(Path(sys.executable).with_name("chaos"))
    cluster = FakeKubeAPI.from_overlay(grace_seconds=0.2, ready_seconds=0.2)
    cluster.chaos_mesh = True  # mlflow-latency's NetworkChaos (the walk-through installs it)
    server, url = serve(cluster)
    replicas = {
        key: d["spec"].get("replicas") for key, d in cluster.deployments.items() if key[0] == NS
    }
    system_before = {
        (p["metadata"]["namespace"], p["metadata"]["name"])
        for p in cluster.pods.values()
        if p["metadata"]["namespace"] != NS
    }
    experiment = json.loads(path.read_text())
    run_dir = tmp_path / "run"
    env = {
        **os.environ,
        "KUBECONFIG": str(write_kubeconfig(tmp_path / "kubeconfig", {CONTEXT: url}, CONTEXT)),
        "HELIUS_TARGET": "kubernetes",
        "HELIUS_KUBE_CONTEXT": CONTEXT,
        "HELIUS_KUBE_ALLOWED_CONTEXTS": CONTEXT,
        "HELIUS_KUBE_ALLOWED_SERVERS": f"{CONTEXT}={url}",
        "HELIUS_PROMETHEUS_URL": "http://127.0.0.1:1",  # no probe runs (--dry probes)
        "HELIUS_MLFLOW_URL": mlflow_url,
        "HELIUS_RUN_DIR": str(run_dir),
        "HELIUS_LOAD_RATE": "100",
        "HELIUS_SAFEGUARDS": "off",  # its Prometheus queries have nothing to read here
        **_short_timing(experiment),
    }
    for name in ("KUBERNETES_CONTEXT", "KUBERNETES_HOST", "CHAOSTOOLKIT_IN_POD"):
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
    journal = json.loads(journal_path.read_text())
    assert journal["status"] == "completed", (done.stdout[-2000:], log)
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
