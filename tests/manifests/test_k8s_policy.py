"""Deployment policies hold on every overlay, and each policy catches a broken manifest."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from k8s_checks import check_all, is_harness
from k8s_paths import OVERLAYS, TARGETS

Obj = dict[str, Any]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_workload_meets_the_policies(target: str, rendered: dict[str, list[Obj]]) -> None:
    assert check_all(rendered[target]) == []


def test_the_policies_cover_every_deployment(rendered: dict[str, list[Obj]]) -> None:
    """The HA policies hold for the system; only the harness's own workloads are exempt."""
    deployments = [o for o in rendered["kind"] if o["kind"] == "Deployment"]
    system = {o["metadata"]["name"] for o in deployments if not is_harness(o)}
    harness = {o["metadata"]["name"] for o in deployments if is_harness(o)}
    assert system == {"helius-reco", "mlflow", "grafana", "prometheus"}
    assert harness == {"loadgen-master", "loadgen-worker", "helius-chaos-reaper"}


def test_the_harness_label_does_not_exempt_the_system(rendered: dict[str, list[Obj]]) -> None:
    """Labelling only the Deployment (not its pods, which a drain would then still evict)
    does not exempt it: a one-replica mlflow is still caught."""
    objects = copy.deepcopy(rendered["kind"])
    mlflow = _deployment(objects)
    mlflow["metadata"]["labels"]["helius.chaos/harness"] = "true"
    mlflow["spec"]["replicas"] = 1
    assert any("1 replicas" in p for p in check_all(objects))


def _deployment(objects: list[Obj], name: str = "mlflow") -> Obj:
    return next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name)


def _pdb(objects: list[Obj], name: str = "mlflow") -> Obj:
    return next(
        o for o in objects if o["kind"] == "PodDisruptionBudget" and o["metadata"]["name"] == name
    )


def _container(objects: list[Obj], deployment: str = "mlflow") -> Obj:
    spec = _deployment(objects, deployment)["spec"]["template"]["spec"]
    container: Obj = spec["containers"][0]
    return container


def _env(objects: list[Obj], name: str, deployment: str = "mlflow") -> Obj:
    return next(e for e in _container(objects, deployment)["env"] if e["name"] == name)


def _volume(objects: list[Obj], name: str, deployment: str) -> Obj:
    volumes = _deployment(objects, deployment)["spec"]["template"]["spec"]["volumes"]
    volume: Obj = next(v for v in volumes if v["name"] == name)
    return volume


BREAKAGES: dict[str, tuple[Callable[[list[Obj]], None], str]] = {
    "two replicas": (
        lambda o: _deployment(o)["spec"].update(replicas=2),
        "2 replicas, at least 3 required",
    ),
    "no zone spread": (
        lambda o: _deployment(o)["spec"]["template"]["spec"].pop("topologySpreadConstraints"),
        "no zone spread",
    ),
    "spread on hostname only": (
        lambda o: _deployment(o)["spec"]["template"]["spec"]["topologySpreadConstraints"].pop(0),
        "no zone spread",
    ),
    "no PDB": (
        lambda o: o.remove(_pdb(o)),
        "0 PodDisruptionBudgets select it",
    ),
    "PDB blocks every eviction": (
        lambda o: _pdb(o)["spec"].update(maxUnavailable=0),
        "no room for an eviction",
    ),
    "PDB minAvailable equal to replicas": (
        lambda o: (_pdb(o)["spec"].pop("maxUnavailable"), _pdb(o)["spec"].update(minAvailable=3)),
        "no room for an eviction",
    ),
    "PDB lets everything go": (
        lambda o: _pdb(o)["spec"].update(maxUnavailable="100%"),
        "lets every replica go at once",
    ),
    "no readiness probe": (
        lambda o: _container(o).pop("readinessProbe"),
        "has no readinessProbe",
    ),
    "no liveness probe": (
        lambda o: _container(o).pop("livenessProbe"),
        "has no livenessProbe",
    ),
    "no memory limit": (
        lambda o: _container(o)["resources"]["limits"].pop("memory"),
        "has no limits.memory",
    ),
    "runs as root": (
        lambda o: _deployment(o)["spec"]["template"]["spec"]["securityContext"].update(
            runAsNonRoot=False, runAsUser=0
        ),
        "does not set runAsNonRoot",
    ),
    "privilege escalation": (
        lambda o: _container(o)["securityContext"].pop("allowPrivilegeEscalation"),
        "allowPrivilegeEscalation",
    ),
    "latest tag": (
        lambda o: _container(o).update(image="ghcr.io/helius/mlflow-server:latest"),
        "uses `latest`",
    ),
    "untagged image": (
        lambda o: _container(o).update(image="ghcr.io/helius/mlflow-server"),
        "has no tag",
    ),
    "literal password in env": (
        lambda o: _env(o, "DB_PASS").update(value="hunter2", valueFrom=None),
        "DB_PASS has a literal value",
    ),
    "literal password in a URI": (
        lambda o: _env(o, "MLFLOW_BACKEND_STORE_URI").update(
            value="postgresql://mlflow:hunter2@postgres:5432/mlflow"
        ),
        "URI with a literal password",
    ),
    "password file outside a Secret volume": (
        lambda o: _env(o, "GF_DATABASE_PASSWORD__FILE", "grafana").update(value="/tmp/pass"),  # noqa: S108  a value in a rendered manifest, never opened
        "names a file outside any Secret volume",
    ),
    "password file volume turned into a ConfigMap": (
        lambda o: (
            _volume(o, "db-creds", "grafana").pop("secret"),
            _volume(o, "db-creds", "grafana").update(configMap={"name": "grafana-db-creds"}),
        ),
        "names a file outside any Secret volume",
    ),
    "a Secret object with data": (
        lambda o: o.append(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}, "data": {"k": "dg=="}}
        ),
        "literal Secret",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_manifest_is_caught(breakage: str, rendered: dict[str, list[Obj]]) -> None:
    objects = copy.deepcopy(rendered["kind"])
    assert check_all(objects) == []
    breaker, expected = BREAKAGES[breakage]
    breaker(objects)
    problems = check_all(objects)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("target", OVERLAYS)  # base has no harness (an opt-in component)
def test_the_load_generator_exports_where_it_is_probed_and_scraped(
    target: str, rendered: dict[str, list[Obj]]
) -> None:
    """The locustfile's exporter binds 127.0.0.1 unless told otherwise: in a pod the kubelet's
    readiness probe and Prometheus come from outside it, so the worker must bind its pod's
    address on the port both use."""
    worker = next(
        o
        for o in rendered[target]
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "loadgen-worker"
    )
    pod = worker["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    command = container["command"]
    port = command[command.index("--metrics-port") + 1]
    assert "--metrics-host" in command, command
    assert command[command.index("--metrics-host") + 1] not in ("127.0.0.1", "localhost")
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == port
    assert container["readinessProbe"]["httpGet"]["port"] in ("metrics", int(port))
