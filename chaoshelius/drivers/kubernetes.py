"""Kubernetes driver: thin, on chaostoolkit-kubernetes (chaosk8s) and the kubernetes client.

Safety first: the driver refuses to be built unless the kube context it would use (the
configured `kube_context`, else the kubeconfig's current context) is in `kube_allowed_contexts`,
is defined in the kubeconfig file chaosk8s reads, and `kube_namespace` is in
`kube_allowed_namespaces`. The allowed context is then passed to every chaosk8s call as
`KUBERNETES_CONTEXT`, so the check and the action cannot disagree. (Without a kubeconfig file
chaosk8s would ignore the context and call `KUBERNETES_HOST` or the in-cluster API, which the
allow-list never vouched for: refused.)

Errors: every operation converts what the client and chaosk8s raise (ApiException, chaosk8s's
ActivityFailed, kubeconfig and connection errors) into a one-line TargetError naming the
operation, the context, the API's status and message, and what to do about it.

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
checks what the driver sends against a fake API server (tests/extension/k8s_fake_api.py) through
the real client and chaosk8s, nothing more.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from chaosk8s import get_config_path
from chaosk8s.chaosmesh.network.actions import add_latency
from chaosk8s.deployment.actions import scale_deployment
from chaosk8s.networking.actions import create_network_policy, remove_network_policy
from chaosk8s.node.actions import drain_nodes, uncordon_node
from chaosk8s.pod.actions import terminate_pods
from chaoslib.exceptions import ActivityFailed
from kubernetes import client as k8s
from kubernetes import config as kubeconfig
from kubernetes.client.exceptions import ApiException
from kubernetes.config import kube_config
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError

from chaoshelius.config import HarnessConfig
from chaoshelius.drivers.base import FaultRef, PathMode, PodInfo
from chaoshelius.exceptions import HeliusError, NotAllowedError, TargetError
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


def _kubeconfig_contexts() -> tuple[str, set[str], str | None]:
    """The kubeconfig file chaosk8s will load: its path, context names and current context."""
    path = get_config_path()
    loaded = os.path.expanduser(kube_config.KUBE_CONFIG_DEFAULT_LOCATION)
    if not os.path.isfile(path):
        raise TargetError(
            f"no kubeconfig file at {path} (KUBECONFIG must name one file); without it chaosk8s "
            "ignores the kube context, so the allow-list cannot be enforced"
        )
    if os.path.abspath(path) != os.path.abspath(loaded):
        raise TargetError(
            f"chaosk8s would check the kubeconfig {path} but load {loaded} (KUBECONFIG changed "
            "after the kubernetes client was imported); set KUBECONFIG before starting `chaos`"
        )
    try:
        contexts, active = kubeconfig.list_kube_config_contexts(path)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError) as exc:
        raise TargetError(f"cannot read the kubeconfig {path}: {exc}") from exc
    names = {str(c["name"]) for c in contexts or []}
    return path, names, str(active["name"]) if active else None


def resolve_context(config: HarnessConfig) -> str:
    """The kube context the driver would use, or NotAllowedError/TargetError."""
    path, defined, active = _kubeconfig_contexts()
    context = config.kube_context or active
    if context is None:
        raise TargetError(f"the kubeconfig {path} has no current context; set kube_context")
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
    if context not in defined:
        raise TargetError(
            f"kube context {context!r} is allowed but not defined in the kubeconfig {path} "
            f"(it defines {sorted(defined)}); fix kube_context or KUBECONFIG"
        )
    return context


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _api_message(exc: ApiException) -> str:
    """The API server's own message (from its Status body), else the HTTP reason."""
    try:
        message = json.loads(exc.body or "")["message"]
    except (ValueError, TypeError, KeyError):
        message = None
    return _one_line(message or exc.reason or "no message")


def _api_hint(status: int | None, context: str) -> str:
    if status == 401:
        return f"the credentials of context {context!r} were refused; refresh them (log in again)"
    if status == 403:
        return (
            f"the user of context {context!r} lacks that RBAC permission; grant it "
            "(a Role in the namespace, a ClusterRole for nodes) or use a context that has it"
        )
    if status == 404:
        return (
            "it does not exist; check kube_namespace, kube_deployments and that the resource "
            "type is installed (NetworkChaos needs Chaos Mesh)"
        )
    if status == 409:
        return "it conflicts with the object's current state; look at the object and retry"
    if status is not None and status >= 500:
        return "the API server failed; check the cluster's health (kubectl get --raw /readyz)"
    return "see the API server's message"


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
    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """The one boundary: whatever the client or chaosk8s raise becomes a TargetError."""
        where = f"in context {self._context!r}, namespace {self._ns!r}"
        try:
            yield
        except HeliusError:
            raise
        except ApiException as exc:
            raise self._api_error(what, where, exc) from exc
        except ActivityFailed as exc:  # chaosk8s's own; it often wraps an ApiException
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, ApiException):
                raise self._api_error(what, where, cause) from cause
            raise TargetError(f"cannot {what} {where}: {_one_line(exc)}") from exc
        except ConfigException as exc:
            raise TargetError(
                f"cannot load kube context {self._context!r} to {what}: {_one_line(exc)}; "
                "check its credentials in the kubeconfig"
            ) from exc
        except HTTPError as exc:
            raise TargetError(
                f"cannot reach the Kubernetes API of context {self._context!r} to {what} "
                f"({_one_line(exc)}); check that the cluster is up and the kubeconfig's server "
                "address"
            ) from exc

    def _api_error(self, what: str, where: str, exc: ApiException) -> TargetError:
        return TargetError(
            f"cannot {what} {where}: the Kubernetes API answered {exc.status} "
            f"{_one_line(exc.reason)} ({_api_message(exc)}); {_api_hint(exc.status, self._context)}"
        )

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
        with self._calling(f"list the pods labelled {APP_LABEL}={app}"):
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
            with self._calling(f"delete the pods labelled {selector}"):
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
            with self._calling(f"delete the pod {name}"):
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
        now = time.time()
        with self._calling(f"scale the Deployment {name} to {replicas}"):
            apps = k8s.AppsV1Api(self._api())
            current: Any = apps.read_namespaced_deployment(name, self._ns)
            annotations = current.metadata.annotations or {}
            original = annotations.get(ANNOT_ORIGINAL, str(current.spec.replicas))
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
        with self._calling(f"restore the replicas of the Deployment {name}"):
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
            with self._calling(f"create the Chaos Mesh NetworkChaos {name} (needs Chaos Mesh)"):
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
            with self._calling(f"create the NetworkPolicy {name}"):
                try:
                    create_network_policy(spec=policy, ns=self._ns, secrets=self._secrets)
                except ApiException as exc:
                    if exc.status != 409:  # already there: the fault is in place
                        raise
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
        with self._calling(f"delete the NetworkPolicy {name}"):
            try:
                remove_network_policy(name, ns=self._ns, secrets=self._secrets)
                undone.append(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        latency = f"{name}-latency"
        # not chaosk8s's delete_network_fault: it turns every error, 404 included, into an
        # ActivityFailed, so "nothing to delete" (or no Chaos Mesh at all) could not be told apart
        with self._calling(f"delete the Chaos Mesh NetworkChaos {latency}"):
            try:
                k8s.CustomObjectsApi(self._api()).delete_namespaced_custom_object(
                    "chaos-mesh.org", "v1alpha1", self._ns, "networkchaos", latency
                )
                undone.append(latency)
            except ApiException as exc:
                if exc.status != 404:  # 404: no such object, or Chaos Mesh is not installed
                    raise
        return undone

    # ---------------------------------------------------------------- zones
    def drain_zone(self, zone: str, ttl_seconds: float) -> FaultRef:
        now = time.time()
        selector = f"{ZONE_LABEL}={zone}"
        with self._calling(f"drain the nodes labelled {selector}"):
            nodes: list[str] = drain_nodes(
                label_selector=selector,
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
        selector = f"{ZONE_LABEL}={zone}"
        with self._calling(f"uncordon the nodes labelled {selector}"):
            listed: list[Any] = k8s.CoreV1Api(self._api()).list_node(label_selector=selector).items
            cordoned = [n.metadata.name for n in listed if n.spec and n.spec.unschedulable]
            uncordon_node(label_selector=selector, secrets=self._secrets)
        # every node of the zone is made schedulable again, but only a cordoned one was undone
        return [f"drain-{zone}"] if cordoned else []

    def active_faults(self) -> list[FaultRef]:
        with self._calling("list the chaos NetworkPolicies"):
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
