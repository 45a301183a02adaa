"""The kubernetes driver against the fake API server serving the real kind overlay.

No cluster can run here (see k8s_fake_api.py): the fake serves the objects that
`kubectl kustomize manifests/overlays/kind` renders (the recommender and MLflow pods carry
their real `emptyDir` volumes and labels, the PDBs are the real ones) on kind's four nodes, and
models graceful deletion, PDB-enforcing eviction and the controllers that replace pods. Nothing
is mocked between the driver and that fake: real `kubernetes` client, real HTTP, real
kubeconfig.

What this proves that the hand-built fixture cannot: a zone drain really empties the zone of
the system (the very pods chaosk8s's drain skipped for their emptyDir), leaves kube-system
alone, waits for a PDB instead of breaking it, and the probes read the result per zone and
without counting a terminating pod.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed
from chaoslib.provider.python import run_python_activity
from support.k8s_fake_api import FakeKubeAPI, isolate_client, serve, write_kubeconfig

from chaoshelius import windows
from chaoshelius.config import HarnessConfig
from chaoshelius.drivers import get_driver
from chaoshelius.drivers.kubernetes import (
    ANNOT_CORDONED,
    ANNOT_EXPIRES,
    ANNOT_ORIGINAL,
    KubernetesDriver,
)
from chaoshelius.exceptions import TargetError
from chaoshelius.load.actions import start_load
from chaoshelius.load.plan import LoadPlan
from chaoshelius.topology import Target
from chaoshelius.zones import probes as zone_probes

NS = "helius"
CONTEXT = "kind-helius"
SYSTEM = ("helius-reco", "mlflow", "grafana", "prometheus")


@pytest.fixture
def cluster() -> FakeKubeAPI:
    return FakeKubeAPI.from_overlay(grace_seconds=0.3, ready_seconds=0.2)


@pytest.fixture
def configuration(
    cluster: FakeKubeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    server, url = serve(cluster)
    path = write_kubeconfig(tmp_path / "kubeconfig", {CONTEXT: url}, current=CONTEXT)
    isolate_client(monkeypatch, path)
    yield {
        "target": "kubernetes",
        "kube_allowed_contexts": [CONTEXT],
        "kube_allowed_servers": {CONTEXT: url},
        "helius_run_dir": str(tmp_path / "run"),
    }
    server.shutdown()
    server.server_close()


@pytest.fixture
def driver(configuration: dict[str, Any]) -> KubernetesDriver:
    built = get_driver(HarnessConfig.from_chaos(configuration))
    assert isinstance(built, KubernetesDriver)
    return built


def _zones(cluster: FakeKubeAPI, app: str) -> list[str | None]:
    return sorted((cluster.zone_of(p) or "-") for p in cluster.live_pods(NS, app))


def _in_zone(cluster: FakeKubeAPI, zone: str) -> dict[tuple[str, str], str]:
    """(namespace, name) -> uid of every pod on the zone's nodes."""
    with cluster.lock:
        return {
            key: pod["metadata"]["uid"]
            for key, pod in cluster.pods.items()
            if cluster.zone_of(pod) == zone
        }


def test_the_fake_runs_the_overlay_one_replica_per_zone(cluster: FakeKubeAPI) -> None:
    """The starting point every other test relies on (and the manifests' topology promise)."""
    for app in SYSTEM:
        assert _zones(cluster, app) == ["zone-a", "zone-b", "zone-c"], app
    reco = cluster.live_pods(NS, "helius-reco")[0]
    assert any("emptyDir" in v for v in reco["spec"]["volumes"])  # what chaosk8s skipped
    assert {p["metadata"]["name"] for p in cluster.pdbs.values()} >= set(SYSTEM)


def test_az_drain_evicts_the_zones_helius_pods_and_nothing_else(
    cluster: FakeKubeAPI, driver: KubernetesDriver
) -> None:
    before = _in_zone(cluster, "zone-a")
    harness = {k for k in before if k[0] == NS and k[1].startswith(("helius-chaos-", "loadgen-"))}
    assert harness  # the reaper runs on zone-a: the drain must spare it
    helius_before = {k for k in before if k[0] == NS} - harness
    others_before = {k: uid for k, uid in before.items() if k[0] != NS}
    assert helius_before and others_before  # the zone holds both, or the test proves nothing

    fault = driver.drain_zone("zone-a", ttl_seconds=20)

    evictions = {
        (r.path.split("/")[4], r.path.split("/")[6]) for r in cluster.sent("POST", "/eviction$")
    }
    assert evictions == helius_before  # every helius pod of the zone, through the eviction API
    assert cluster.sent("DELETE", "/pods/") == []
    after = _in_zone(cluster, "zone-a")
    assert {k for k in after if k[0] == NS} == harness  # the rest gone, not just terminating
    assert {k: uid for k, uid in after.items() if k[0] != NS} == others_before  # same pods
    assert not any("/namespaces/kube-system/" in r.path for r in cluster.requests)
    assert fault.details["cordoned"] == ["helius-worker"]
    # the Deployments replaced their pods in the two other zones, not in the cordoned one
    for app in SYSTEM:
        zones = _zones(cluster, app)
        assert len(zones) == 3 and "zone-a" not in zones, (app, zones)


def test_every_zone_has_ready_pods_sees_the_empty_zone(
    cluster: FakeKubeAPI, configuration: dict[str, Any], driver: KubernetesDriver
) -> None:
    """Three ready replicas cluster-wide is not enough: zone-a has none after the drain."""
    ok = zone_probes.every_zone_has_ready_pods("helius-reco", configuration=configuration)
    assert ok["ok"] is True and ok["zones"] == {"zone-a": 1, "zone-b": 1, "zone-c": 1}
    windows.mark_fault_phase()  # what the drain action does: from now on, no data is a failure
    driver.drain_zone("zone-a", ttl_seconds=20)
    time.sleep(0.3)  # the replacements' readiness delay
    assert len([p for p in driver.list_pods("helius-reco") if p.ready]) == 3
    bad = zone_probes.every_zone_has_ready_pods("helius-reco", configuration=configuration)
    assert bad["ok"] is False and bad["zones"]["zone-a"] == 0
    # uncordoning alone moves nothing back (a scheduler only places new pods): the undo
    # restarts the Deployments that lost the zone, and the rollout spreads them again
    driver.uncordon_zone("zone-a")
    assert ANNOT_CORDONED not in cluster.nodes["helius-worker"]["metadata"].get("annotations", {})
    restarts = [r.path.rsplit("/", 1)[1] for r in cluster.sent("PATCH", "/deployments/")]
    assert sorted(restarts) == ["helius-reco", "mlflow"]  # kube_deployments, nothing else
    deadline = time.monotonic() + 20
    while _zones(cluster, "helius-reco") != ["zone-a", "zone-b", "zone-c"]:
        assert time.monotonic() < deadline, _zones(cluster, "helius-reco")
        time.sleep(0.2)
    while not zone_probes.every_zone_has_ready_pods("mlflow", configuration=configuration)["ok"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    back = zone_probes.every_zone_has_ready_pods("helius-reco", configuration=configuration)
    assert back["ok"] is True, back
    assert driver.uncordon_zone("zone-a") == []  # twice: nothing cordoned, nothing restarted
    assert len(cluster.sent("PATCH", "/deployments/")) == 2


def test_await_per_zone_waits_for_the_drained_zone_to_refill(
    cluster: FakeKubeAPI, configuration: dict[str, Any]
) -> None:
    """After a drain the Deployment's count is back (in zones b and c) long before the undo's
    rollout puts a pod in zone-a again: az-drain's await, per zone, waits for that."""
    from chaoshelius.pods.actions import await_pods_ready
    from chaoshelius.zones.actions import drain_zone, uncordon_zone

    drained = drain_zone("zone-a", ttl_seconds=30, configuration=configuration)
    assert drained["window"]
    counted = await_pods_ready("helius-reco", timeout_seconds=10, configuration=configuration)
    assert len(counted["ready"]) == 3 and "zone-a" not in _zones(cluster, "helius-reco")
    with pytest.raises(ActivityFailed, match=r"zones short .*\['zone-a'\]"):
        await_pods_ready(
            "helius-reco", timeout_seconds=1, per_zone=True, configuration=configuration
        )
    uncordon_zone("zone-a", configuration=configuration)
    spread = await_pods_ready(
        "helius-reco", timeout_seconds=20, per_zone=True, configuration=configuration
    )
    zones = zone_probes.every_zone_has_ready_pods("helius-reco", configuration=configuration)
    assert zones["ok"] and zones["zones"]["zone-a"] >= 1, (zones, spread)


def test_az_drain_waits_for_a_pdb_and_gives_up_at_the_ttl(
    cluster: FakeKubeAPI, driver: KubernetesDriver
) -> None:
    """MLflow's zone-b replica is unready: evicting zone-a's would leave one of three, below
    the PDB's maxUnavailable 1. The API answers 429; the driver retries, then says so."""
    [mlflow_a] = [p for p in cluster.live_pods(NS, "mlflow") if cluster.zone_of(p) == "zone-a"]
    [mlflow_b] = [p for p in cluster.live_pods(NS, "mlflow") if cluster.zone_of(p) == "zone-b"]
    cluster.set_ready(NS, mlflow_b["metadata"]["name"], False)
    with pytest.raises(TargetError, match="disruption budget") as caught:
        driver.drain_zone("zone-a", ttl_seconds=2.5)
    assert mlflow_a["metadata"]["name"] in str(caught.value)
    still = cluster.pods[(NS, mlflow_a["metadata"]["name"])]
    assert "deletionTimestamp" not in still["metadata"]
    refused = [
        r for r in cluster.sent("POST", "/eviction$") if mlflow_a["metadata"]["name"] in r.path
    ]
    assert len(refused) >= 2  # retried, not given up at the first 429
    assert "zone-a" not in _zones(cluster, "helius-reco")  # the rest of the zone did go

    cluster.set_ready(NS, mlflow_b["metadata"]["name"], True)
    driver.drain_zone("zone-a", ttl_seconds=20)  # draining again finishes the job
    assert "zone-a" not in _zones(cluster, "mlflow")


def test_pods_replaced_does_not_count_a_terminating_pod(
    cluster: FakeKubeAPI, configuration: dict[str, Any]
) -> None:
    """A kill on a cluster is a graceful delete: the pod lingers with a deletionTimestamp
    while its replacement starts. It must count as gone (the kill took), not as a survivor."""
    cluster.grace_seconds = 30.0
    kill = {
        "type": "action",
        "name": "kill",
        "provider": {
            "type": "python",
            "module": "chaoshelius.pods.actions",
            "func": "kill_pods",
            "arguments": {"app": "mlflow", "count": 1},
        },
    }
    [killed] = run_python_activity(kill, configuration, {})["killed"]
    assert "deletionTimestamp" in cluster.pods[(NS, killed)]["metadata"]  # still there
    time.sleep(0.3)  # the replacement's readiness delay
    replaced = {
        "type": "probe",
        "name": "replaced",
        "provider": {
            "type": "python",
            "module": "chaoshelius.pods.probes",
            "func": "pods_replaced",
            "arguments": {"app": "mlflow"},
        },
    }
    verdict = run_python_activity(replaced, configuration, {})
    assert verdict["ok"] is True, verdict
    assert killed not in verdict["pods"]


# ---------------------------------------------------------------- the in-cluster load
def _cluster_plan(users: int, spawn_rate: float, duration_seconds: int, processes: int) -> LoadPlan:
    """A load plan for the cluster as start_load makes one (no host: the manifests' Service)."""
    return LoadPlan(
        rate=users * 2.5,
        rate_source="argument",
        users=users,
        spawn_rate=spawn_rate,
        processes=processes,
        duration_seconds=duration_seconds,
        host=None,
        target=Target.KUBERNETES.value,
    )


def test_start_load_sizes_the_in_cluster_locust_and_stop_load_ends_it(
    cluster: FakeKubeAPI, driver: KubernetesDriver
) -> None:
    assert cluster.live_pods(NS, "loadgen") == []  # the manifests start it at 0
    plan = _cluster_plan(users=40, spawn_rate=8, duration_seconds=300, processes=3)
    started = driver.start_load(plan)
    settings = cluster.configmaps[(NS, "loadgen-settings")]["data"]
    assert started["settings"] == plan.locust_env()  # the plan, as Locust reads it
    assert plan.locust_env().items() <= settings.items()
    assert settings["LOCUST_USERS"] == "40" and settings["LOCUST_EXPECT_WORKERS"] == "3"
    assert settings["LOCUST_SPAWN_RATE"] == "8" and settings["LOCUST_TARGET_RPS"] == "100"
    assert settings["LOCUST_HOST"] == "http://helius-reco-service"  # the manifests' default
    roles = sorted(
        p["metadata"]["labels"]["helius.chaos/loadgen-role"]
        for p in cluster.live_pods(NS, "loadgen")
    )
    assert roles == ["master", "worker", "worker", "worker"]
    for name in ("loadgen-master", "loadgen-worker"):
        annotations = cluster.deployments[(NS, name)]["metadata"]["annotations"]
        assert annotations[ANNOT_ORIGINAL] == "0"  # what the reaper restores at expiry
        assert annotations[ANNOT_EXPIRES] == f"{started['expires_at']:.0f}"
    with pytest.raises(TargetError, match="already running"):
        driver.start_load(_cluster_plan(users=1, spawn_rate=1, duration_seconds=10, processes=2))

    # the load generator is the harness's instrument: a zone drain leaves it running
    driver.drain_zone("zone-a", ttl_seconds=20)
    assert len(cluster.live_pods(NS, "loadgen")) == 4

    assert driver.stop_load() == {"stopped": True}
    assert cluster.live_pods(NS, "loadgen") == []
    assert driver.stop_load() == {"stopped": False}  # safe twice
    assert ANNOT_ORIGINAL not in cluster.deployments[(NS, "loadgen-master")]["metadata"].get(
        "annotations", {}
    )


def test_the_experiments_load_actions_run_the_in_cluster_locust_on_target_kubernetes(
    cluster: FakeKubeAPI, configuration: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalogue's own start-load / stop-load steps (chaoshelius.load.actions, through
    Chaos Toolkit's python provider) size the in-cluster Locust from the rate: no local
    Locust process, the pacing and churn in the settings, load.json in the run dir."""
    configuration = {**configuration, "helius_load_rate": 500}

    def activity(func: str, **arguments: Any) -> Any:
        return run_python_activity(
            {
                "type": "action",
                "name": func,
                "provider": {
                    "type": "python",
                    "module": "chaoshelius.load.actions",
                    "func": func,
                    "arguments": arguments,
                },
            },
            configuration,
            {},
        )

    started = activity("start_load", duration_seconds=120)
    assert started["target"] == "kubernetes" and "pid" not in started
    assert (started["rate"], started["users"], started["processes"]) == (500, 200, 2)
    settings = cluster.configmaps[(NS, "loadgen-settings")]["data"]
    assert settings["LOCUST_TARGET_RPS"] == "500"
    assert settings["LOCUST_USERS"] == "200" and settings["LOCUST_EXPECT_WORKERS"] == "2"
    assert settings["LOCUST_NEW_CONNECTION_SHARE"] == "0.05"
    assert len(cluster.live_pods(NS, "loadgen")) == 3  # master + 2 workers
    recorded = (Path(configuration["helius_run_dir"]) / "load.json").read_text()
    assert '"rate": 500' in recorded and '"target": "kubernetes"' in recorded

    stopped = activity("stop_load")
    assert stopped["stopped"] is True and cluster.live_pods(NS, "loadgen") == []
    assert windows.load_stopped_at() is not None  # the client probes judge up to here

    # az-drain's capacity mode measures from this machine: on a cluster the configured rate
    # stands in for it, and without one the run is refused with what to set
    drained = activity("start_load", capacity_fraction=0.5, duration_seconds=60)
    assert drained["rate"] == 500 and "local only" in drained["rate_source"]
    activity("stop_load")
    monkeypatch.delenv("HELIUS_LOAD_RATE", raising=False)
    del configuration["helius_load_rate"]
    with pytest.raises(TargetError, match="set helius_load_rate"):
        start_load(capacity_fraction=0.5, configuration=configuration)
