"""The aws overlay verifies RDS's certificate (issue 17, item 6): `sslmode=require` encrypts
but accepts any certificate. Over the rendered overlay (`kubectl kustomize`): every client of
RDS (MLflow, its migration init container, Grafana) uses verify-full with a CA file that is
mounted from a ConfigMap the overlay ships."""

from __future__ import annotations

import posixpath
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from k8s_paths import TARGETS, render

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def aws() -> list[Obj]:
    return render(TARGETS["aws"])


def _one(objs: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"].startswith(name)]
    assert len(found) == 1, (kind, name, [o["metadata"]["name"] for o in found])
    return found[0]


def _env(container: Obj, name: str) -> str:
    values = [e.get("value") for e in container.get("env", []) if e["name"] == name]
    assert len(values) == 1 and values[0], (container["name"], name)
    return str(values[0])


def _mounted_file(objs: list[Obj], pod: Obj, container: Obj, path: str) -> None:
    """`path` is a key of a ConfigMap mounted (read-only) at its directory in `container`."""
    mounts = [
        m for m in container.get("volumeMounts", []) if m["mountPath"] == posixpath.dirname(path)
    ]
    assert len(mounts) == 1 and mounts[0].get("readOnly"), (container["name"], path)
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[0]["name"])
    config_map = _one(objs, "ConfigMap", volume["configMap"]["name"])
    assert posixpath.basename(path) in config_map["data"], config_map["metadata"]["name"]


def test_the_aws_overlay_uses_verify_full(aws: list[Obj]) -> None:
    endpoints = _one(aws, "ConfigMap", "helius-endpoints")
    assert endpoints["data"]["DB_SSLMODE"] == "verify-full"


@pytest.mark.parametrize("container_name", ["db-migrate", "mlflow"])
def test_mlflow_checks_rds_against_the_mounted_ca_bundle(
    aws: list[Obj], container_name: str
) -> None:
    pod = _one(aws, "Deployment", "mlflow")["spec"]["template"]["spec"]
    container = next(
        c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] == container_name
    )
    query = parse_qs(urlsplit(_env(container, "MLFLOW_BACKEND_STORE_URI")).query)
    assert query["sslmode"] == ["$(DB_SSLMODE)"]
    (root,) = query["sslrootcert"]
    _mounted_file(aws, pod, container, root)


def test_grafana_checks_rds_against_the_mounted_ca_bundle(aws: list[Obj]) -> None:
    pod = _one(aws, "Deployment", "grafana")["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "grafana")
    _mounted_file(aws, pod, container, _env(container, "GF_DATABASE_CA_CERT_PATH"))
