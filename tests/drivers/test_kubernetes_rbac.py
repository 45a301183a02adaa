"""Least privilege: the runner's and the reaper's RBAC in the manifests is enough, and each
rule of it is needed.

The fake API server (k8s_fake_api.py; no cluster can run here) enforces RBAC from the Role and
ClusterRole objects that `kubectl kustomize manifests/overlays/kind` renders, for the bearer
token of the test's kube context: each request is mapped to (verb, API group, resource,
subresource, namespace) as the API server's authorizer does, and refused with 403 otherwise.
resourceNames are honoured as the authorizer does: a rule naming objects matches only a request
naming one of them (so never a list or a create, which name none). What it does not model:
aggregated roles, field selectors on metadata.name, non-resource URLs, impersonation, and
admission (the node ValidatingAdmissionPolicy: tests/manifests/test_harness_rbac.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from support.k8s_fake_api import KIND_OVERLAY, FakeKubeAPI, Rule, _render, isolate_client, serve
from support.k8s_fake_api import write_kubeconfig as write

from chaoshelius.config import HarnessConfig
from chaoshelius.drivers import get_driver, k8s_reaper
from chaoshelius.drivers.kubernetes import KubernetesDriver
from chaoshelius.exceptions import TargetError
from chaoshelius.load.plan import LoadPlan
from chaoshelius.topology import Target

NS = "helius"
CONTEXT = "kind-helius"
RUNNER_ROLES = {"helius-chaos-runner", "helius-chaos-runner-nodes"}
REAPER_ROLES = {"helius-chaos-reaper", "helius-chaos-reaper-nodes"}
# the in-cluster load generator's plan (start_load's, for one worker)
LOAD = LoadPlan(
    rate=10.0,
    rate_source="argument",
    users=5,
    spawn_rate=5.0,
    processes=1,
    duration_seconds=60,
    host=None,
    target=Target.KUBERNETES.value,
)


def _roles(names: set[str]) -> list[dict[str, Any]]:
    return [
        o
        for o in yaml.safe_load_all(_render(KIND_OVERLAY))
        if o["kind"] in ("Role", "ClusterRole") and o["metadata"]["name"] in names
    ]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeKubeAPI, str]]:
    cluster = FakeKubeAPI.from_overlay(grace_seconds=0.1, ready_seconds=0.0)
    cluster.chaos_mesh = True
    server, url = serve(cluster)
    path = write(tmp_path / "kubeconfig", {CONTEXT: url, "reaper": url}, current=CONTEXT)
    isolate_client(monkeypatch, path)
    yield cluster, url
    server.shutdown()
    server.server_close()


def _driver(url: str, **overrides: Any) -> KubernetesDriver:
    config = {
        "target": "kubernetes",
        "kube_allowed_contexts": [CONTEXT],
        "kube_allowed_servers": {CONTEXT: url},
    } | overrides
    built = get_driver(HarnessConfig.from_chaos(config))
    assert isinstance(built, KubernetesDriver)
    return built


def every_operation(driver: KubernetesDriver) -> None:
    """Every fault, undo, probe read and load operation the experiments use."""
    driver.list_pods("mlflow")
    driver.kill_pods("mlflow", count=1)
    driver.kill_pods("helius-reco", count=1, zone="zone-b")
    driver.scale("mlflow", 0, ttl_seconds=60)
    driver.restore_scale("mlflow")
    driver.cut_path("mlflow-rds", "blackhole", None, ttl_seconds=60)
    driver.active_faults()
    driver.restore_path("mlflow-rds")
    driver.cut_path("reco-mlflow", "latency", 200, ttl_seconds=60)
    driver.restore_path("reco-mlflow")
    driver.drain_zone("zone-a", ttl_seconds=20)
    driver.uncordon_zone("zone-a")
    driver.start_load(LOAD)
    driver.stop_load()


def test_the_runner_role_allows_every_operation(world: tuple[FakeKubeAPI, str]) -> None:
    cluster, url = world
    cluster.authorize(f"{CONTEXT}-token", _roles(RUNNER_ROLES))
    every_operation(_driver(url))
    assert cluster.sent()  # and none of them was refused:
    assert not [r for r in cluster.requests if r.token != f"{CONTEXT}-token"]


def _without(rules: list[Rule], index: int, verb: str) -> list[Rule]:
    rule = rules[index]
    smaller = replace(rule, verbs=rule.verbs - {verb})
    return [*rules[:index], *([smaller] if smaller.verbs else []), *rules[index + 1 :]]


def test_every_rule_of_the_runner_role_is_needed(world: tuple[FakeKubeAPI, str]) -> None:
    """Drop any one verb of any one rule: some operation is refused with a 403 that the
    driver turns into an RBAC hint. (A grant nothing uses would survive: it must not exist.)"""
    cluster, url = world
    cluster.authorize(f"{CONTEXT}-token", _roles(RUNNER_ROLES))
    full = cluster.grants[f"{CONTEXT}-token"]
    unneeded = []
    for index, rule in enumerate(full):
        for verb in sorted(rule.verbs):
            fresh = FakeKubeAPI.from_overlay(grace_seconds=0.05, ready_seconds=0.0)
            fresh.chaos_mesh = True
            with cluster.lock:  # serve the fresh world from the same server
                for name in ("pods", "nodes", "deployments", "statefulsets", "pdbs"):
                    setattr(cluster, name, getattr(fresh, name))
                cluster.policies, cluster.chaos = fresh.policies, {}
                cluster.configmaps, cluster.controlled = fresh.configmaps, fresh.controlled
                cluster.grants[f"{CONTEXT}-token"] = _without(full, index, verb)
            try:
                every_operation(_driver(url))
            except TargetError as exc:
                assert "403" in str(exc) and "RBAC" in str(exc)
            else:
                unneeded.append((sorted(rule.resources), verb))
    assert unneeded == []


def test_draining_every_namespace_needs_a_wider_grant(world: tuple[FakeKubeAPI, str]) -> None:
    """On purpose: the runner's role cannot evict outside `helius`."""
    cluster, url = world
    cluster.authorize(f"{CONTEXT}-token", _roles(RUNNER_ROLES))
    with pytest.raises(TargetError, match="403.*RBAC"):
        _driver(url, kube_drain_all_namespaces=True).drain_zone("zone-a", ttl_seconds=5)


def test_the_reaper_role_reverts_every_kind_of_fault(
    world: tuple[FakeKubeAPI, str], tmp_path: Path
) -> None:
    cluster, url = world
    every_fault: list[Callable[[KubernetesDriver], object]] = [
        lambda d: d.scale("mlflow", 0, ttl_seconds=0),
        lambda d: d.cut_path("mlflow-rds", "blackhole", None, ttl_seconds=0),
        lambda d: d.cut_path("reco-mlflow", "latency", 100, ttl_seconds=0),
        lambda d: d.drain_zone("zone-a", ttl_seconds=5),
        lambda d: d.start_load(replace(LOAD, users=1, spawn_rate=1, duration_seconds=1)),
    ]
    driver = _driver(url)
    for fault in every_fault:
        fault(driver)
    cluster.authorize("reaper-token", _roles(REAPER_ROLES))
    api = k8s_reaper.client_for(str(tmp_path / "kubeconfig"), "reaper")
    events: list[dict[str, Any]] = []
    reverted = k8s_reaper.reap(api, NS, now=4e9, log=events.append)
    assert sorted(reverted) == [
        "deployment/loadgen-master",
        "deployment/loadgen-worker",
        "deployment/mlflow",
        "networkchaos/helius-chaos-reco-mlflow-latency",
        "networkpolicy/helius-chaos-mlflow-rds",
        "node/helius-worker",
    ], events
    assert not [e for e in events if e["event"] == "error"]


def _as(tmp_path: Path, context: str) -> Any:
    """The kubernetes client of `context` in the test's kubeconfig (its bearer token)."""
    return k8s_reaper.client_for(str(tmp_path / "kubeconfig"), context)


def _status(call: Callable[[], object]) -> int:
    try:
        call()
    except ApiException as exc:
        return int(exc.status)
    return 200


@pytest.mark.parametrize(("roles", "context"), [(RUNNER_ROLES, CONTEXT), (REAPER_ROLES, "reaper")])
def test_the_harness_cannot_rewrite_the_system(
    world: tuple[FakeKubeAPI, str], tmp_path: Path, roles: set[str], context: str
) -> None:
    """resourceNames (issue 17, finding 5): the harness patches the Deployments it scales and
    deletes its own fault objects, not grafana's pod template or the default-deny policies."""
    cluster, _ = world
    cluster.authorize(f"{context}-token", _roles(roles))
    api = _as(tmp_path, context)
    apps, net = k8s.AppsV1Api(api), k8s.NetworkingV1Api(api)
    template = {"spec": {"template": {"spec": {"serviceAccountName": "mlflow"}}}}
    for other in ("grafana", "prometheus"):
        assert _status(lambda o=other: apps.patch_namespaced_deployment(o, NS, template)) == 403
    for policy in ("default-deny-egress", "default-deny-ingress", "mlflow-ingress"):
        assert _status(lambda p=policy: net.delete_namespaced_network_policy(p, NS)) == 403, policy
    # what the harness does patch is still allowed
    replicas = {"metadata": {"annotations": {"helius.chaos/expires-at": "4000000000"}}}
    assert _status(lambda: apps.patch_namespaced_deployment("mlflow", NS, replicas)) == 200
