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
from support.k8s_fake_api import FakeKubeAPI, isolate_client, serve, write_kubeconfig

from chaoshelius.config import HarnessConfig
from chaoshelius.drivers import get_driver, k8s_reaper
from chaoshelius.drivers.k8s_names import expires_at_value
from chaoshelius.drivers.kubernetes import ANNOT_CORDONED, ANNOT_EXPIRES, ANNOT_ORIGINAL
from chaoshelius.exceptions import TargetError

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


# ---------------------------------------------------------------- damaged annotations
def _fault_policy(cluster: FakeKubeAPI, name: str, expires: str | None) -> None:
    annotations = {} if expires is None else {ANNOT_EXPIRES: expires}
    cluster.policies[(NS, name)] = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"helius.chaos/fault": "true"},
            "annotations": annotations,
        },
        "spec": {"podSelector": {}},
    }


def _scaled(cluster: FakeKubeAPI, name: str, original: str, expires: str, replicas: int) -> None:
    deployment = cluster.deployments[(NS, name)]
    deployment["metadata"]["annotations"] = {ANNOT_ORIGINAL: original, ANNOT_EXPIRES: expires}
    deployment["spec"]["replicas"] = replicas


def _cordoned(cluster: FakeKubeAPI, node: str, expires: str) -> None:
    cluster.nodes[node]["metadata"]["annotations"] = {
        ANNOT_CORDONED: "drain-zone-a",
        ANNOT_EXPIRES: expires,
    }
    cluster.nodes[node]["spec"]["unschedulable"] = True


def test_a_malformed_original_replicas_is_skipped_and_the_pass_goes_on(
    world: tuple[FakeKubeAPI, str, Path],
) -> None:
    """One Deployment's `original-replicas` is not a number: that one is left as it is and
    reported in one line; every other expired fault of the pass is still reverted. (Before:
    `int()` raised out of the pass, every pass, and the reaper crash-looped with the node
    still cordoned and MLflow still at 0.)"""
    cluster, _, kubeconfig = world
    past = f"{time.time() - 60:.0f}"
    with cluster.lock:
        _scaled(cluster, "helius-reco", "three", past, 1)  # damaged
        _scaled(cluster, "mlflow", "3", past, 0)
        _fault_policy(cluster, "helius-chaos-mlflow-rds", past)
        _cordoned(cluster, "helius-worker", past)
    events: list[dict[str, Any]] = []
    api = k8s_reaper.client_for(str(kubeconfig), CONTEXT)
    reverted = k8s_reaper.reap(api, NS, time.time(), log=events.append)
    assert sorted(reverted) == [
        "deployment/mlflow",
        "networkpolicy/helius-chaos-mlflow-rds",
        "node/helius-worker",
    ]
    assert [e for e in events if e["event"] == "malformed"] == [
        {
            "event": "malformed",
            "object": "deployment/helius-reco",
            "annotation": ANNOT_ORIGINAL,
            "value": "three",
            "action": "skipped",
        }
    ]
    assert not [e for e in events if e["event"] == "error"]
    with cluster.lock:
        reco = cluster.deployments[(NS, "helius-reco")]
        assert reco["metadata"]["annotations"][ANNOT_ORIGINAL] == "three"  # for a person
        assert cluster.deployments[(NS, "mlflow")]["spec"]["replicas"] == 3
        assert not cluster.nodes["helius-worker"]["spec"].get("unschedulable")
    # reported once per process, not every pass
    reported: set[tuple[str, str, str]] = set()
    again: list[dict[str, Any]] = []
    for _ in range(3):
        k8s_reaper.reap(api, NS, time.time(), log=again.append, reported=reported)
    assert [e["object"] for e in again if e["event"] == "malformed"] == ["deployment/helius-reco"]


@pytest.mark.parametrize("expires", ["nan", "inf", "-inf", "-5", "0", "soon", "", None])
def test_a_malformed_expiry_is_reverted_at_once_and_reported(
    world: tuple[FakeKubeAPI, str, Path], expires: str | None
) -> None:
    """`nan` and `inf` parse as floats, and `nan <= now` / `inf <= now` are False: before,
    such a fault was never reverted. A malformed expiry now reads as "past", is reverted in
    the same pass and reported; an unexpired well-formed one is left alone."""
    cluster, _, kubeconfig = world
    future = f"{time.time() + 600:.0f}"
    with cluster.lock:
        _fault_policy(cluster, "helius-chaos-reco-mlflow", expires)
        _fault_policy(cluster, "helius-chaos-mlflow-rds", future)
        if expires is not None:
            _scaled(cluster, "mlflow", "3", expires, 0)
            _cordoned(cluster, "helius-worker", expires)
    events: list[dict[str, Any]] = []
    api = k8s_reaper.client_for(str(kubeconfig), CONTEXT)
    reverted = k8s_reaper.reap(api, NS, time.time(), log=events.append)
    expected = ["networkpolicy/helius-chaos-reco-mlflow"]
    if expires is not None:
        expected += ["deployment/mlflow", "node/helius-worker"]
    assert sorted(reverted) == sorted(expected)
    malformed = sorted(e["object"] for e in events if e["event"] == "malformed")
    assert malformed == sorted(expected)
    assert all(e["action"] == "reverted" for e in events if e["event"] == "malformed")
    with cluster.lock:
        assert (NS, "helius-chaos-mlflow-rds") in cluster.policies  # not expired: kept


def test_the_reaper_process_survives_a_bad_object_and_reverts_the_rest(
    world: tuple[FakeKubeAPI, str, Path],
) -> None:
    """`python -m chaoshelius.drivers.k8s_reaper --once`, as the Deployment runs it: exit 0,
    one JSON line per event, the good faults reverted beside the damaged one."""
    cluster, _, kubeconfig = world
    past = f"{time.time() - 60:.0f}"
    with cluster.lock:
        _scaled(cluster, "mlflow", "3 replicas", past, 0)
        _cordoned(cluster, "helius-worker", "nan")
    done = subprocess.run(  # noqa: S603  argv list: this interpreter
        [
            sys.executable,
            "-m",
            "chaoshelius.drivers.k8s_reaper",
            "--once",
            "--context",
            CONTEXT,
            "--kubeconfig",
            str(kubeconfig),
            "--namespace",
            NS,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        env=_env(kubeconfig),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in done.stdout.splitlines()]
    kinds = [(e["event"], e.get("object")) for e in events]
    assert ("malformed", "deployment/mlflow") in kinds
    assert ("malformed", "node/helius-worker") in kinds
    assert ("reverted", "node/helius-worker") in kinds
    assert kinds[-1] == ("pass", None)
    with cluster.lock:
        assert not cluster.nodes["helius-worker"]["spec"].get("unschedulable")
        assert cluster.deployments[(NS, "mlflow")]["spec"]["replicas"] == 0  # left for a person


# ---------------------------------------------------------------- expiries as written
@pytest.mark.parametrize("at", [float("nan"), float("inf"), float("-inf"), -5.0, 0.0])
def test_an_expiry_that_would_never_come_is_never_written(at: float) -> None:
    with pytest.raises(ValueError, match="finite, positive"):
        expires_at_value(at)
    assert expires_at_value(1_800_000_000.4) == "1800000000"


@pytest.mark.parametrize("ttl", [float("nan"), float("inf"), -5.0])
def test_the_driver_refuses_a_ttl_that_gives_no_expiry_before_any_write(
    world: tuple[FakeKubeAPI, str, Path], monkeypatch: pytest.MonkeyPatch, ttl: float
) -> None:
    """Before: `f"{now + inf:.0f}"` wrote expires-at "inf" on the Deployment (never reverted)."""
    cluster, url, kubeconfig = world
    isolate_client(monkeypatch, kubeconfig)
    driver = get_driver(
        HarnessConfig.from_chaos(
            {
                "target": "kubernetes",
                "kube_context": CONTEXT,
                "kube_allowed_contexts": [CONTEXT],
                "kube_allowed_servers": {CONTEXT: url},
            }
        )
    )
    for fault in (
        lambda: driver.scale("mlflow", 0, ttl),
        lambda: driver.cut_path("mlflow-rds", "blackhole", None, ttl),
        lambda: driver.drain_zone("zone-a", ttl),
    ):
        with pytest.raises(TargetError, match="finite number of seconds >= 0") as caught:
            fault()
        assert "\n" not in str(caught.value)
    assert [r for r in cluster.requests if r.method != "GET"] == []
