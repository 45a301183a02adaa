"""Every overlay renders, and every object validates offline against the Kubernetes schemas."""

from __future__ import annotations

import copy
import socket
from typing import Any

import kubernetes_validate
import pytest
import yaml
from k8s_paths import MANIFESTS, TARGETS

from chaoshelius.topology import NAMESPACE, ZONE_LABEL, ZONES

# kubernetes-validate ships the schemas (no network); 1.32 matches the kubectl in CI and a
# current kind node image. Strict: unknown fields are errors, as `kubectl apply` would say.
K8S_VERSION = "1.32.0"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}


def validate(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_target_renders_into_the_helius_namespace(
    target: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    objects = rendered[target]
    assert len(objects) > 30
    for obj in objects:
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in obj["metadata"], obj["metadata"]["name"]
        else:
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_object_validates_against_the_openapi_schema(
    target: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    failures = []
    for obj in rendered[target]:
        try:
            validate(obj)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: no schema (a CRD?)")
    assert failures == []


def test_validation_is_offline_and_never_skips_an_unknown_kind(
    rendered: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The schemas ship with the package: no socket opens; a kind it lacks is an error."""

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("kubernetes-validate tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for obj in rendered["kind"]:
        validate(obj)
    custom = {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "NetworkChaos", "metadata": {}}
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        validate(custom)


def test_the_validator_rejects_a_broken_object(rendered: dict[str, list[dict[str, Any]]]) -> None:
    deployment = next(o for o in rendered["kind"] if o["kind"] == "Deployment")
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "three"
    unknown_field = copy.deepcopy(deployment)
    unknown_field["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    for broken in (wrong_type, unknown_field):
        with pytest.raises(kubernetes_validate.ValidationError):
            validate(broken)


def test_kind_cluster_has_three_workers_one_per_zone() -> None:
    cluster = yaml.safe_load((MANIFESTS / "overlays/kind/kind-cluster.yaml").read_text())
    assert cluster["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    workers = [n for n in cluster["nodes"] if n["role"] == "worker"]
    assert len(workers) == 3
    assert sorted(n["labels"][ZONE_LABEL] for n in workers) == sorted(ZONES)
    assert [n["role"] for n in cluster["nodes"]].count("control-plane") == 1
