"""Kubernetes driver: thin, on chaostoolkit-kubernetes (chaosk8s) and the kubernetes client.

Safety first: the driver refuses to be built unless the kube context it would use (the
configured `kube_context`, else the kubeconfig's current context) is in `kube_allowed_contexts`
and `kube_namespace` is in `kube_allowed_namespaces`. The allowed context is then passed to
every chaosk8s call as `KUBERNETES_CONTEXT`, so the check and the action cannot disagree.

Faults and their undo:

- pods: `chaosk8s.pod.actions.terminate_pods` by label (and pod name for a zone).
- scale: `chaosk8s.deployment.actions.scale_deployment`; the replicas it replaced are kept in
  the annotation `helius.chaos/original-replicas`, so the undo works from any process.
- paths: blackhole/reset -> a NetworkPolicy `helius-chaos-<edge>` that leaves the source pods
  every egress except the edge's destination; latency -> a Chaos Mesh NetworkChaos.
  A NetworkPolicy only removes what no other policy allows: the manifests' policies must not
  grant MLflow -> RDS separately (see manifests/).
- zones: `chaosk8s.node.actions.drain_nodes` / `uncordon_node` on
  `topology.kubernetes.io/zone=<zone>`.

There is no dead-man's switch on a cluster: TTLs are recorded in annotations
(`helius.chaos/expires-at`) but only the local stack enforces them.

No cluster can run on the machines this was written on: tests/extension/test_kubernetes_driver.py
checks what the driver sends against a mocked API, nothing more.
"""

from __future__ import annotations

import time
from typing import Any

from chaosk8s.chaosmesh.network.actions import add_latency, delete_network_fault
from chaosk8s.deployment.actions import scale_deployment
from chaosk8s.networking.actions import create_network_policy, remove_network_policy
from chaosk8s.node.actions import drain_nodes, uncordon_node
from chaosk8s.pod.actions import terminate_pods
from kubernetes import client as k8s
from kubernetes import config as kubeconfig
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from chaoshelius.config import HarnessConfig
from chaoshelius.drivers.base import FaultRef, PathMode, PodInfo
from chaoshelius.exceptions import NotAllowedError, TargetError
from chaoshelius.topology import APP_LABEL, EDGE_MLFLOW_RDS, EDGE_RECO_MLFLOW, ZONE_LABEL, App

__all__ = ["KubernetesDriver", "network_policy_for", "resolve_context"]

FAULT_LABEL = "helius.chaos/fault"
ANNOT_ORIGINAL = "helius.chaos/original-replicas"
ANNOT_EXPIRES = "helius.chaos/expires-at"

# edge -> (source app, destination app)
_EDGES: dict[str, tuple[str, str]] = {
    EDGE_MLFLOW_RDS: (App.MLFLOW.value, App.POSTGRES.value),
    EDGE_RECO_MLFLOW: (App.RECO.value, App.MLFLOW.value),
}


def resolve_context(config: HarnessConfig) -> str:
    """The kube context the driver would use, or NotAllowedError/TargetError."""
    context = config.kube_context
    if context is None:
        try:
            _, active = kubeconfig.list_kube_config_contexts()  # type: ignore[no-untyped-call]
        except (ConfigException, OSError) as exc:
            raise TargetError(
                f"no kubeconfig to read the current context from ({exc}); set kube_context"
            ) from exc
        context = str(active["name"])
    if context not in config.kube_allowed_contexts:
        raise NotAllowedError(
            f"kube context {context!r} is not in kube_allowed_contexts "
            f"{config.kube_allowed_contexts}; add it to the experiment's configuration "
            "(or HELIUS_KUBE_ALLOWED_CONTEXTS) to allow faults there"
        )
    if config.kube_namespace not in config.kube_allowed_namespaces:
        raise NotAllowedError(
            f"namespace {config.kube_namespace!r} is not in kube_allowed_namespaces "
            f"{config.kube_allowed_namespaces}; refusing to inject faults there"
        )
    return context


def network_policy_for(edge: str, namespace: str, rds_cidr: str | None) -> dict[str, Any]:
    """The NetworkPolicy that cuts `edge`: the source pods keep every egress but the edge's."""
    source, destination = _edge(edge)
    allowed: list[dict[str, Any]] = [
        {
            "namespaceSelector": {},
            "podSelector": {
                "matchExpressions": [
                    {"key": APP_LABEL, "operator": "NotIn", "values": [destination]}
                ]
            },
        }
    ]
    if edge == EDGE_MLFLOW_RDS and rds_cidr:
        allowed.append({"ipBlock": {"cidr": "0.0.0.0/0", "except": [rds_cidr]}})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": f"helius-chaos-{edge}",
            "namespace": namespace,
            "labels": {FAULT_LABEL: "true", "helius.chaos/edge": edge},
        },
        "spec": {
            "podSelector": {"matchLabels": {APP_LABEL: source}},
            "policyTypes": ["Egress"],
            "egress": [{"to": allowed}],
        },
    }


def _edge(edge: str) -> tuple[str, str]:
    try:
        return _EDGES[edge]
    except KeyError:
        raise TargetError(f"unknown edge {edge!r}; known edges: {sorted(_EDGES)}") from None


class KubernetesDriver:
    """Faults on an allow-listed cluster namespace through chaosk8s."""

    name = "kubernetes"

    def __init__(self, config: HarnessConfig):
        self._context = resolve_context(config)
        self._ns = config.kube_namespace
        self._deployments = dict(config.kube_deployments)
        self._rds_cidr = config.kube_rds_cidr
        self._secrets = {"KUBERNETES_CONTEXT": self._context}

    # ---------------------------------------------------------------- helpers
    def _api(self) -> k8s.ApiClient:
        from chaosk8s import create_k8s_api_client

        api: k8s.ApiClient = create_k8s_api_client(self._secrets)
        return api

    def _deployment(self, app: str) -> str:
        try:
            return self._deployments[app]
        except KeyError:
            raise TargetError(
                f"no Deployment known for app {app!r}; add it to kube_deployments"
            ) from None

    def _node_zones(self) -> dict[str, str | None]:
        nodes: list[Any] = k8s.CoreV1Api(self._api()).list_node().items
        return {n.metadata.name: (n.metadata.labels or {}).get(ZONE_LABEL) for n in nodes}

    # ---------------------------------------------------------------- pods
    def list_pods(self, app: str, zone: str | None = None) -> list[PodInfo]:
        core = k8s.CoreV1Api(self._api())
        pods: list[Any] = core.list_namespaced_pod(
            self._ns, label_selector=f"{APP_LABEL}={app}"
        ).items
        zones = self._node_zones()
        out = []
        for pod in pods:
            pod_zone = zones.get(pod.spec.node_name) if pod.spec.node_name else None
            if zone is not None and pod_zone != zone:
                continue
            conditions = (pod.status.conditions or []) if pod.status else []
            ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
            out.append(PodInfo(pod.metadata.name, app, pod_zone, ready))
        return out

    def kill_pods(self, app: str, count: int | None = None, zone: str | None = None) -> list[str]:
        selector = f"{APP_LABEL}={app}"
        if zone is None:
            killed: list[str] = terminate_pods(
                label_selector=selector,
                all=count is None,
                qty=count or 1,
                ns=self._ns,
                secrets=self._secrets,
            )
            return killed
        names = [p.name for p in self.list_pods(app, zone)][: count or None]
        for name in names:
            terminate_pods(
                label_selector=selector,
                name_pattern=f"^{name}$",
                ns=self._ns,
                secrets=self._secrets,
            )
        return names

    # ---------------------------------------------------------------- scale
    def scale(self, app: str, replicas: int, ttl_seconds: float) -> FaultRef:
        name = self._deployment(app)
        apps = k8s.AppsV1Api(self._api())
        current: Any = apps.read_namespaced_deployment(name, self._ns)
        annotations = current.metadata.annotations or {}
        original = annotations.get(ANNOT_ORIGINAL, str(current.spec.replicas))
        now = time.time()
        apps.patch_namespaced_deployment(
            name,
            self._ns,
            {
                "metadata": {
                    "annotations": {
                        ANNOT_ORIGINAL: original,
                        ANNOT_EXPIRES: f"{now + ttl_seconds:.0f}",
                    }
                }
            },
        )
        scale_deployment(name, replicas, ns=self._ns, secrets=self._secrets)
        return FaultRef(
            id=f"scale-{name}",
            kind="scale",
            target=app,
            started_at=now,
            expires_at=now + ttl_seconds,
            details={"replicas": replicas, "original_replicas": int(original)},
        )

    def restore_scale(self, app: str) -> list[str]:
        name = self._deployment(app)
        apps = k8s.AppsV1Api(self._api())
        current: Any = apps.read_namespaced_deployment(name, self._ns)
        original = (current.metadata.annotations or {}).get(ANNOT_ORIGINAL)
        if original is None:
            return []
        scale_deployment(name, int(original), ns=self._ns, secrets=self._secrets)
        apps.patch_namespaced_deployment(
            name,
            self._ns,
            {"metadata": {"annotations": {ANNOT_ORIGINAL: None, ANNOT_EXPIRES: None}}},
        )
        return [f"scale-{name}"]

    # ---------------------------------------------------------------- paths
    def cut_path(
        self, edge: str, mode: PathMode, latency_ms: int | None, ttl_seconds: float
    ) -> FaultRef:
        source, destination = _edge(edge)
        now = time.time()
        if mode == "latency":
            name = f"helius-chaos-{edge}-latency"
            add_latency(
                name,
                ns=self._ns,
                label_selectors=f"{APP_LABEL}={source}",
                mode="all",
                direction="to",
                latency=f"{latency_ms or 500}ms",
                target_mode="all",
                target_label_selectors=f"{APP_LABEL}={destination}",
                secrets=self._secrets,
            )
        else:
            policy = network_policy_for(edge, self._ns, self._rds_cidr)
            policy["metadata"]["annotations"] = {ANNOT_EXPIRES: f"{now + ttl_seconds:.0f}"}
            name = policy["metadata"]["name"]
            try:
                create_network_policy(spec=policy, ns=self._ns, secrets=self._secrets)
            except ApiException as exc:
                if exc.status != 409:  # already there: the fault is in place
                    raise TargetError(f"cannot create NetworkPolicy {name}: {exc.reason}") from exc
        return FaultRef(
            id=name,
            kind="path",
            target=edge,
            started_at=now,
            expires_at=now + ttl_seconds,
            details={"mode": mode, "latency_ms": latency_ms},
        )

    def restore_path(self, edge: str) -> list[str]:
        _edge(edge)
        undone = []
        name = f"helius-chaos-{edge}"
        try:
            remove_network_policy(name, ns=self._ns, secrets=self._secrets)
            undone.append(name)
        except ApiException as exc:
            if exc.status != 404:
                raise TargetError(f"cannot delete NetworkPolicy {name}: {exc.reason}") from exc
        latency = f"{name}-latency"
        try:
            delete_network_fault(latency, ns=self._ns, secrets=self._secrets)
            undone.append(latency)
        except ApiException as exc:
            if exc.status != 404:
                raise TargetError(f"cannot delete NetworkChaos {latency}: {exc.reason}") from exc
        return undone

    # ---------------------------------------------------------------- zones
    def drain_zone(self, zone: str, ttl_seconds: float) -> FaultRef:
        now = time.time()
        nodes: list[str] = drain_nodes(
            label_selector=f"{ZONE_LABEL}={zone}",
            delete_pods_with_local_storage=False,
            timeout=int(ttl_seconds),
            secrets=self._secrets,
        )
        return FaultRef(
            id=f"drain-{zone}",
            kind="drain",
            target=zone,
            started_at=now,
            expires_at=now + ttl_seconds,
            details={"nodes": nodes},
        )

    def uncordon_zone(self, zone: str) -> list[str]:
        nodes: list[str] = uncordon_node(
            label_selector=f"{ZONE_LABEL}={zone}", secrets=self._secrets
        )
        return [f"drain-{zone}"] if nodes else []

    def active_faults(self) -> list[FaultRef]:
        net = k8s.NetworkingV1Api(self._api())
        policies: list[Any] = net.list_namespaced_network_policy(
            self._ns, label_selector=f"{FAULT_LABEL}=true"
        ).items
        return [
            FaultRef(
                id=p.metadata.name,
                kind="path",
                target=(p.metadata.labels or {}).get("helius.chaos/edge", ""),
            )
            for p in policies
        ]
