"""The dead-man's switch on a cluster: a runner SIGKILLed mid-fault, the reaper reverts at TTL.

Against the fake API server serving the kind overlay (k8s_fake_api.py: no cluster can run
here). Both the runner and the reaper are real separate processes talking HTTP to it through a
kubeconfig; the runner is killed with SIGKILL, so no rollback, no `finally`, nothing of it
runs after the kill. Only the reaper can undo the faults, and it must not before their TTL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_fake_api import FakeKubeAPI, serve, write_kubeconfig

from chaoshelius.drivers import k8s_reaper
from chaoshelius.drivers.kubernetes import ANNOT_CORDONED, ANNOT_EXPIRES, ANNOT_ORIGINAL

NS = "helius"
CONTEXT = "kind-helius"
TTL = 6.0
POLICY = (NS, "helius-chaos-mlflow-rds")

RUNNER = textwrap.dedent(
    """
    import sys, time
    from chaoshelius.config import HarnessConfig
    from chaoshelius.drivers import get_driver

    context, server, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3])
    driver = get_driver(HarnessConfig.from_chaos({
        "target": "kubernetes", "kube_context": context, "kube_allowed_contexts": [context],
        "kube_allowed_servers": {context: server},
    }))
    driver.cut_path("mlflow-rds", "blackhole", None, ttl)
    driver.scale("mlflow", 0, ttl)
    driver.drain_zone("zone-a", ttl)
    print("faulted", flush=True)
    time.sleep(600)  # holding the fault, as a method's pause would
    """
)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[FakeKubeAPI, str, Path]]:
    cluster = FakeKubeAPI.from_overlay(grace_seconds=0.2, ready_seconds=0.1)
    server, url = serve(cluster)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {CONTEXT: url}, current=CONTEXT)
    yield cluster, url, kubeconfig
    server.shutdown()
    server.server_close()


def _env(kubeconfig: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "HTTP"))}
    return env | {"KUBECONFIG": str(kubeconfig), "NO_PROXY": "127.0.0.1"}


def _faults(cluster: FakeKubeAPI) -> dict[str, Any]:
    with cluster.lock:
        mlflow = cluster.deployments[(NS, "mlflow")]
        worker = cluster.nodes["helius-worker"]
        return {
            "policy": POLICY in cluster.policies,
            "mlflow_replicas": mlflow["spec"]["replicas"],
            "scale_annotated": ANNOT_ORIGINAL in mlflow["metadata"].get("annotations", {}),
            "zone_a_cordoned": bool(worker["spec"].get("unschedulable")),
            "cordon_annotated": ANNOT_CORDONED in worker["metadata"].get("annotations", {}),
            "operator_cordon": bool(cluster.nodes["helius-worker2"]["spec"].get("unschedulable")),
        }


FAULTED = {
    "policy": True,
    "mlflow_replicas": 0,
    "scale_annotated": True,
    "zone_a_cordoned": True,
    "cordon_annotated": True,
    "operator_cordon": True,
}
REVERTED = {
    "policy": False,
    "mlflow_replicas": 3,
    "scale_annotated": False,
    "zone_a_cordoned": False,
    "cordon_annotated": False,
    "operator_cordon": True,  # never the harness's to undo
}


def test_the_reaper_reverts_a_killed_runners_faults_at_their_ttl(
    world: tuple[FakeKubeAPI, str, Path],
) -> None:
    cluster, url, kubeconfig = world
    cluster.nodes["helius-worker2"]["spec"]["unschedulable"] = True  # an operator's, before
    env = _env(kubeconfig)
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER, CONTEXT, url, str(TTL)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    reaper: subprocess.Popen[str] | None = None
    try:
        assert runner.stdout is not None
        assert runner.stdout.readline().strip() == "faulted"
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        assert _faults(cluster) == FAULTED
        with cluster.lock:
            expires = float(cluster.policies[POLICY]["metadata"]["annotations"][ANNOT_EXPIRES])

        reaper = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chaoshelius.drivers.k8s_reaper",
                "--context",
                CONTEXT,
                "--kubeconfig",
                str(kubeconfig),
                "--namespace",
                NS,
                "--interval",
                "0.2",
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert reaper.stdout is not None
        events: list[dict[str, Any]] = []
        while not any(e["event"] == "pass" for e in events):
            events.append(json.loads(reaper.stdout.readline()))
        if time.time() < expires - 0.5:  # a pass before the TTL changed nothing
            assert _faults(cluster) == FAULTED
            assert not any(e["event"] == "reverted" for e in events)

        deadline = time.monotonic() + TTL + 15
        while _faults(cluster) != REVERTED and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _faults(cluster) == REVERTED
        assert time.time() >= expires - 1  # expires-at is written in whole seconds
        while len([e for e in events if e["event"] == "reverted"]) < 3:
            events.append(json.loads(reaper.stdout.readline()))
        reverted = sorted(e["object"] for e in events if e["event"] == "reverted")
        assert reverted == [
            "deployment/mlflow",
            "networkpolicy/helius-chaos-mlflow-rds",
            "node/helius-worker",
        ]
        assert all(e["at"] >= expires - 1 for e in events if e["event"] == "reverted")
        time.sleep(0.5)  # the controller brings MLflow back once the replicas are restored
        assert len(cluster.live_pods(NS, "mlflow")) == 3
    finally:
        for process in (runner, reaper):
            if process is not None:
                if process.poll() is None:
                    process.kill()
                    process.wait(10)
                if process.stdout is not None:
                    process.stdout.close()


def test_the_reaper_leaves_unexpired_and_foreign_objects_alone(
    world: tuple[FakeKubeAPI, str, Path],
) -> None:
    """One pass (in this process) with nothing expired: no write request at all."""
    cluster, url, kubeconfig = world
    with cluster.lock:
        cluster.policies[(NS, "helius-chaos-reco-mlflow")] = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {
                "name": "helius-chaos-reco-mlflow",
                "namespace": NS,
                "labels": {"helius.chaos/fault": "true"},
                "annotations": {ANNOT_EXPIRES: f"{time.time() + 600:.0f}"},
            },
            "spec": {"podSelector": {}},
        }
        cluster.nodes["helius-worker3"]["spec"]["unschedulable"] = True  # no annotation
    before = len(cluster.requests)
    events: list[dict[str, Any]] = []
    api = k8s_reaper.client_for(str(kubeconfig), CONTEXT)
    assert k8s_reaper.reap(api, NS, time.time(), log=events.append) == []
    assert events == []
    assert {r.method for r in cluster.requests[before:]} == {"GET"}
    assert (NS, "helius-chaos-reco-mlflow") in cluster.policies
    assert cluster.nodes["helius-worker3"]["spec"]["unschedulable"] is True
