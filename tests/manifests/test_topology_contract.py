"""The names the chaos side relies on are the names the manifests define.

The kubernetes driver (chaoshelius/drivers/kubernetes.py) selects pods by `app=<App>` in the
namespace `helius`, finds zones through the node label topology.kubernetes.io/zone, scales the
Deployments of `kube_deployments` and cuts edges with NetworkPolicies on app labels; the
experiments name apps, zones, edges and alerts. All of that is read here from
chaoshelius/topology.py, chaoshelius/config.py and experiments/*.json and compared with the
rendered overlays, the kind cluster config and the monitoring files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from k8s_checks import WORKLOAD_KINDS, is_harness, selects
from k8s_paths import MANIFESTS, REPO

from chaoshelius.config import HarnessConfig
from chaoshelius.drivers.kubernetes import network_policy_for
from chaoshelius.topology import (
    APP_LABEL,
    EDGES,
    MLFLOW_DB_SECRET,
    MLFLOW_SERVICE,
    MODEL_ALIAS,
    MODEL_NAME,
    NAMESPACE,
    RECO_SERVICE,
    ZONE_LABEL,
    ZONES,
    App,
)

Obj = dict[str, Any]
EXPERIMENTS = sorted((REPO / "experiments").glob("*.json"))
OVERLAYS = ("kind", "aws")


def _arguments(node: Any) -> Iterator[dict[str, Any]]:
    """Every `provider.arguments` mapping in an experiment."""
    if isinstance(node, dict):
        provider = node.get("provider")
        if isinstance(provider, dict) and isinstance(provider.get("arguments"), dict):
            yield provider["arguments"]
        for value in node.values():
            yield from _arguments(value)
    elif isinstance(node, list):
        for value in node:
            yield from _arguments(value)


def _experiment_values(key: str) -> set[str]:
    """Every value an argument `key` takes in the experiments; a `${name}` reference resolves
    to the default of the experiment's configuration key `name` (what a plain run uses)."""
    values = set()
    for path in EXPERIMENTS:
        experiment = json.loads(path.read_text())
        for args in _arguments(experiment):
            if key in args:
                values.add(_resolve(str(args[key]), experiment.get("configuration", {})))
    return values


def _resolve(value: str, configuration: dict[str, Any]) -> str:
    match = re.fullmatch(r"\$\{(\w+)\}", value)
    if match is None:
        return value
    entry = configuration[match.group(1)]
    return str(entry["default"] if isinstance(entry, dict) else entry)


def _objects(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def _workload_apps(objects: list[Obj]) -> set[str]:
    return {
        o["spec"]["template"]["metadata"]["labels"][APP_LABEL]
        for o in objects
        if o["kind"] in WORKLOAD_KINDS
    }


def _deployment(objects: list[Obj], name: str) -> Obj:
    return next(o for o in _objects(objects, "Deployment") if o["metadata"]["name"] == name)


def _env(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env", [])}


def test_experiments_were_found() -> None:
    assert len(EXPERIMENTS) >= 6
    assert _experiment_values("app") and _experiment_values("zone")


# ------------------------------------------------------------------------------ namespace
def test_namespace_is_the_one_the_driver_and_experiments_use(
    rendered: dict[str, list[Obj]],
) -> None:
    config = HarnessConfig()
    assert config.kube_namespace == NAMESPACE
    assert NAMESPACE in config.kube_allowed_namespaces
    for path in EXPERIMENTS:
        declared = json.loads(path.read_text()).get("configuration", {}).get("kube_namespace")
        if declared is not None:
            assert declared.get("default") == NAMESPACE, path.name
    for target in OVERLAYS:
        namespaces = _objects(rendered[target], "Namespace")
        assert [n["metadata"]["name"] for n in namespaces] == [NAMESPACE]


# ------------------------------------------------------------------------------ app labels
@pytest.mark.parametrize("target", OVERLAYS)
def test_every_app_the_experiments_select_is_a_deployment_label(
    target: str, rendered: dict[str, list[Obj]]
) -> None:
    """`app=<x>` in an experiment selects the pods of exactly one Deployment."""
    deployments = _objects(rendered[target], "Deployment")
    apps = _experiment_values("app")
    assert apps <= {a.value for a in App}
    for app in apps:
        owners = [
            d["metadata"]["name"]
            for d in deployments
            if d["spec"]["template"]["metadata"]["labels"].get(APP_LABEL) == app
        ]
        assert len(owners) == 1, f"app={app}: Deployments {owners}"


@pytest.mark.parametrize("target", OVERLAYS)
def test_kube_deployments_map_apps_to_their_deployments(
    target: str, rendered: dict[str, list[Obj]]
) -> None:
    """The driver scales `kube_deployments[app]`: that Deployment's pods carry `app=<app>`."""
    for app, name in HarnessConfig().kube_deployments.items():
        deployment = _deployment(rendered[target], name)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels[APP_LABEL] == app
        assert deployment["spec"]["selector"]["matchLabels"] == {APP_LABEL: app}


def test_edge_endpoints_exist_on_kind(rendered: dict[str, list[Obj]]) -> None:
    """Each cut names its source and destination by app label; on kind both are pods."""
    apps = _workload_apps(rendered["kind"])
    for edge in EDGES:
        assert edge in _experiment_values("edge") | set(EDGES)
        policy = network_policy_for(edge, NAMESPACE, None)
        source = policy["spec"]["podSelector"]["matchLabels"][APP_LABEL]
        (expression,) = policy["spec"]["egress"][0]["to"][0]["podSelector"]["matchExpressions"]
        assert expression["key"] == APP_LABEL
        assert {source, *expression["values"]} <= apps, edge
    assert _experiment_values("edge") <= set(EDGES)
    assert App.POSTGRES.value in apps


# ------------------------------------------------------------------------------ zones
def test_zones_match_the_kind_nodes_and_the_spread_key(rendered: dict[str, list[Obj]]) -> None:
    cluster = yaml.safe_load((MANIFESTS / "overlays/kind/kind-cluster.yaml").read_text())
    node_zones = {n["labels"][ZONE_LABEL] for n in cluster["nodes"] if n["role"] == "worker"}
    assert node_zones == set(ZONES)
    assert _experiment_values("zone") <= set(ZONES)
    for deployment in _objects(rendered["kind"], "Deployment"):
        if is_harness(deployment):  # the load generator and the reaper go where they fit
            continue
        keys = {
            c["topologyKey"]
            for c in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        }
        assert ZONE_LABEL in keys, deployment["metadata"]["name"]


def test_prometheus_relabels_to_the_local_stack_label_names() -> None:
    """kubernetes_sd gives `app`, `pod`, `zone` (node label), `namespace`, like file-SD."""
    config = yaml.safe_load((MANIFESTS / "monitoring/prometheus/prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod"
    assert sd["namespaces"]["names"] == [NAMESPACE]
    assert sd["attach_metadata"]["node"] is True
    sanitized = re.sub(r"[^a-zA-Z0-9_]", "_", ZONE_LABEL)
    mapping = {
        r["target_label"]: r["source_labels"]
        for r in job["relabel_configs"]
        if not r.get("target_label", "__").startswith("__")
    }
    assert mapping == {
        "app": [f"__meta_kubernetes_pod_label_{APP_LABEL}"],
        "pod": ["__meta_kubernetes_pod_name"],
        "namespace": ["__meta_kubernetes_namespace"],
        "zone": [f"__meta_kubernetes_node_label_{sanitized}"],
    }


@pytest.mark.parametrize("target", OVERLAYS)
def test_every_deployment_is_scraped_on_a_declared_port(
    target: str, rendered: dict[str, list[Obj]]
) -> None:
    """Every system Deployment, and the load generator's workers (the client-side view);
    not the Locust master (it exports nothing: workers count their own requests) nor the
    reaper."""
    for deployment in _objects(rendered[target], "Deployment"):
        if deployment["metadata"]["name"] in ("loadgen-master", "helius-chaos-reaper"):
            continue
        template = deployment["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        ports = {
            str(p["containerPort"]) for c in template["spec"]["containers"] for p in c["ports"]
        }
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] in ports, deployment["metadata"]["name"]


# ------------------------------------------------------------------------------ services, model
@pytest.mark.parametrize("target", OVERLAYS)
def test_services_and_model_names(target: str, rendered: dict[str, list[Obj]]) -> None:
    objects = rendered[target]
    services = {s["metadata"]["name"]: s for s in _objects(objects, "Service")}
    for name, app, port in (
        (RECO_SERVICE, App.RECO.value, 80),
        (MLFLOW_SERVICE, App.MLFLOW.value, 5000),
    ):
        assert services[name]["spec"]["selector"] == {APP_LABEL: app}
        assert [p["port"] for p in services[name]["spec"]["ports"]] == [port]
    tracking = f"http://{MLFLOW_SERVICE}:5000"
    reco = _env(_deployment(objects, App.RECO.value)["spec"]["template"]["spec"]["containers"][0])
    assert reco["HELIUS_MLFLOW_TRACKING_URI"]["value"] == tracking
    assert reco["HELIUS_MODEL_NAME"]["value"] == MODEL_NAME
    assert reco["HELIUS_MODEL_ALIAS"]["value"] == MODEL_ALIAS
    job = next(j for j in _objects(objects, "Job") if j["metadata"]["name"] == "model-bootstrap")
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--tracking-uri") + 1] == tracking
    assert selects(
        next(
            p
            for p in _objects(objects, "NetworkPolicy")
            if p["metadata"]["name"] == "mlflow-ingress"
        )["spec"]["podSelector"],
        {APP_LABEL: App.MLFLOW.value},
    )


def test_recommender_env_names_are_service_settings(rendered: dict[str, list[Obj]]) -> None:
    from helius_reco.core.config import Settings

    reco = _deployment(rendered["kind"], App.RECO.value)["spec"]["template"]["spec"]
    names = {n for n in _env(reco["containers"][0]) if n.startswith("HELIUS_")}
    fields = {f"HELIUS_{f.upper()}" for f in Settings.model_fields}
    assert names and names <= fields, names - fields


@pytest.mark.parametrize("target", OVERLAYS)
def test_mlflow_reads_its_database_credentials_from_the_shared_secret(
    target: str, rendered: dict[str, list[Obj]]
) -> None:
    spec = _deployment(rendered[target], App.MLFLOW.value)["spec"]["template"]["spec"]
    for container in spec["initContainers"] + spec["containers"]:
        env = _env(container)
        for key in ("DB_USER", "DB_PASS"):
            ref = env[key]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": MLFLOW_DB_SECRET, "key": key}, container["name"]


def test_alerts_the_experiments_wait_for_exist() -> None:
    rules = yaml.safe_load((MANIFESTS / "monitoring/rules/helius-alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert _experiment_values("alertname") <= alerts


def test_driver_reads_labels_from_topology() -> None:
    """The driver (kubernetes.py and its k8s_*.py parts) names no label or namespace literally:
    it imports them from topology."""
    files = [REPO / "chaoshelius/drivers/kubernetes.py"]
    files += sorted((REPO / "chaoshelius/drivers").glob("k8s_*.py"))
    assert len(files) > 3, files
    for path in files:
        source = path.read_text()
        for literal in ('"app"', '"topology.kubernetes.io/zone"', f'"{NAMESPACE}"'):
            assert literal not in source, f"{path.name}: {literal}"
    assert "from chaoshelius.topology import" in files[0].read_text()


def test_kind_port_mappings_reach_the_nodeport_services(rendered: dict[str, list[Obj]]) -> None:
    """The host ports kind maps are the NodePorts of the recommender and Grafana Services."""
    cluster = yaml.safe_load((MANIFESTS / "overlays/kind/kind-cluster.yaml").read_text())
    (control,) = [n for n in cluster["nodes"] if n["role"] == "control-plane"]
    assert ZONE_LABEL not in control.get("labels", {})  # a zone drain leaves the entry alone
    mapped = {m["containerPort"] for m in control["extraPortMappings"]}
    assert all(m["listenAddress"] == "127.0.0.1" for m in control["extraPortMappings"])
    nodeports = {
        p["nodePort"]: s["spec"]["selector"][APP_LABEL]
        for s in _objects(rendered["kind"], "Service")
        if s["spec"].get("type") == "NodePort"
        for p in s["spec"]["ports"]
    }
    assert mapped == set(nodeports)
    assert sorted(nodeports.values()) == sorted([App.RECO.value, App.GRAFANA.value])


def test_kind_stand_ins_stay_out_of_the_drained_zone(rendered: dict[str, list[Obj]]) -> None:
    """PostgreSQL and MinIO (one replica, node-bound volume) live outside the zones drained."""
    drained = _experiment_values("zone")
    for name in ("postgres", "minio"):
        sts = next(
            s for s in _objects(rendered["kind"], "StatefulSet") if s["metadata"]["name"] == name
        )
        affinity = sts["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        (expr,) = term["matchExpressions"]
        assert expr["key"] == ZONE_LABEL and expr["operator"] == "In"
        assert set(expr["values"]) <= set(ZONES) - drained, name
