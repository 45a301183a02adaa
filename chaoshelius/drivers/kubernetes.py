"""Kubernetes driver: thin, on chaostoolkit-kubernetes (chaosk8s) and the kubernetes client.

Safety first: the driver refuses to be built unless the kube context it would use (the
configured `kube_context`, else the kubeconfig's current context) is in `kube_allowed_contexts`,
is defined in the kubeconfig file chaosk8s reads, its API server is the one pinned for it in
`kube_allowed_servers` (the server URL, or the sha256 of the CA certificate the context trusts:
a context *name* can point anywhere), and `kube_namespace` is in `kube_allowed_namespaces`. The
allowed context is then passed to every chaosk8s call as `KUBERNETES_CONTEXT`, so the check and
the action cannot disagree. (Without a kubeconfig file chaosk8s would ignore the context and
call `KUBERNETES_HOST` or the in-cluster API, which the allow-list never vouched for: refused.)
The rights it needs are the Role/ClusterRole `helius-chaos-runner` in
manifests/components/chaos-harness (an opt-in kustomize Component).

Errors: every operation converts what the client and chaosk8s raise (ApiException, chaosk8s's
ActivityFailed, kubeconfig and connection errors) into a one-line TargetError naming the
operation, the context, the API's status and message, and what to do about it.

Faults and their undo (every fault carries `helius.chaos/expires-at`, which the in-cluster
reaper, chaoshelius/drivers/k8s_reaper.py, enforces if the runner dies):

- pods: `chaosk8s.pod.actions.terminate_pods` by label (and pod name for a zone). A pod being
  deleted (`deletionTimestamp`) is not listed: it has left the Service and is going away.
- scale: `chaosk8s.deployment.actions.scale_deployment`; the replicas it replaced are kept in
  the annotation `helius.chaos/original-replicas`, so the undo works from any process.
- paths: blackhole/reset -> a NetworkPolicy `helius-chaos-<edge>` that leaves the source pods
  every egress except the edge's destination; latency -> a Chaos Mesh NetworkChaos with a
  `duration` (Chaos Mesh ends it by itself). A NetworkPolicy only removes what no other policy
  allows: the manifests' policies must not grant MLflow -> RDS separately (see manifests/).
- zones: not chaosk8s's `drain_nodes` (it skips pods with emptyDir volumes, i.e. all of ours,
  evicts every namespace, and its undo uncordons nodes it never cordoned). The driver cordons
  the zone's nodes, recording each cordon it made on the node (`helius.chaos/cordoned`), and
  evicts the namespace's pods there through the eviction API (PDBs respected: a 429 is retried
  until the TTL), sparing DaemonSet, static and harness pods (`helius.chaos/harness=true`:
  load generator, reaper); `kube_drain_all_namespaces` widens it to every namespace. The undo
  uncordons only the nodes carrying that annotation.

No cluster can run on the machines this was written on: tests/extension/test_kubernetes_*.py
check it against a fake API server (tests/extension/k8s_fake_api.py, serving the rendered kind
overlay, with graceful deletion, PDB-enforcing eviction and replacing controllers) through the
real client and chaosk8s, nothing more.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import math
import os
import ssl
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import yaml
from chaosk8s import get_config_path
from chaosk8s.deployment.actions import scale_deployment
from chaosk8s.networking.actions import create_network_policy, remove_network_policy
from chaosk8s.pod.actions import terminate_pods
from chaoslib.exceptions import ActivityFailed
from kubernetes import client as k8s
from kubernetes import config as kubeconfig
from kubernetes.client.exceptions import ApiException
from kubernetes.config import kube_config
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError

from chaoshelius.config import HarnessConfig
from chaoshelius.drivers.base import FaultRef, PathMode, PodInfo, check_grace_period
from chaoshelius.drivers.k8s_names import (
    ANNOT_CORDONED,
    ANNOT_EXPIRES,
    ANNOT_ORIGINAL,
    FAULT_LABEL,
    HARNESS_LABEL,
    UNCORDON_PATCH,
    expires_at_value,
    parse_replicas,
)
from chaoshelius.exceptions import HeliusError, NotAllowedError, TargetError
from chaoshelius.topology import APP_LABEL, EDGE_MLFLOW_RDS, EDGE_RECO_MLFLOW, ZONE_LABEL, App

__all__ = ["KubernetesDriver", "ca_fingerprint", "network_policy_for", "resolve_context"]

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # what `kubectl rollout restart` sets
EVICTION_RETRY_SECONDS = 0.5
# the in-cluster load generator (manifests/components/chaos-harness/loadgen.yaml)
LOADGEN_MASTER = "loadgen-master"
LOADGEN_WORKER = "loadgen-worker"
LOADGEN_SETTINGS = "loadgen-settings"

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


def _cluster_of(path: str, context: str) -> dict[str, Any]:
    """The `cluster` entry (server, CA ...) the kubeconfig gives `context`."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle) or {}
        [ctx] = [c for c in document.get("contexts") or [] if c.get("name") == context]
        cluster_name = (ctx.get("context") or {}).get("cluster")
        [cluster] = [c for c in document.get("clusters") or [] if c.get("name") == cluster_name]
    except (OSError, yaml.YAMLError, ValueError, AttributeError) as exc:
        raise TargetError(
            f"cannot read the cluster of context {context!r} in the kubeconfig {path} ({exc}); "
            "each context must name exactly one cluster"
        ) from exc
    found: dict[str, Any] = cluster.get("cluster") or {}
    return found


def ca_fingerprint(cluster: dict[str, Any]) -> str | None:
    """sha256 (hex) of the DER CA certificate a kubeconfig cluster entry trusts, if any."""
    pem: str | None = None
    if data := cluster.get("certificate-authority-data"):
        pem = base64.b64decode(data).decode("ascii", "replace")
    elif file := cluster.get("certificate-authority"):
        with open(os.path.expanduser(str(file)), encoding="ascii", errors="replace") as handle:
            pem = handle.read()
    if pem is None:
        return None
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def _check_pin(path: str, context: str, pin: str | None) -> None:
    """The context's API server must be the pinned one (URL, or CA certificate fingerprint)."""
    if pin is None:
        raise NotAllowedError(
            f"kube context {context!r} is allowed by name but its API server is not pinned; add "
            f"{context}=<server URL> (or {context}=sha256:<CA fingerprint>) to "
            "kube_allowed_servers (HELIUS_KUBE_ALLOWED_SERVERS): a context name alone can point "
            "at any cluster"
        )
    cluster = _cluster_of(path, context)
    if pin.lower().startswith("sha256:"):
        if cluster.get("insecure-skip-tls-verify"):
            raise NotAllowedError(
                f"kube context {context!r} skips TLS verification, so the pinned CA proves "
                "nothing about the server; remove insecure-skip-tls-verify from its cluster"
            )
        try:
            actual = ca_fingerprint(cluster)
        except (OSError, ValueError) as exc:
            raise TargetError(f"cannot read the CA of kube context {context!r}: {exc}") from exc
        wanted = pin.split(":", 1)[1].replace(":", "").lower()
        if actual != wanted:
            raise NotAllowedError(
                f"kube context {context!r} trusts the CA sha256:{actual}, not the pinned "
                f"sha256:{wanted}: this is another cluster (or the pin is stale); refusing"
            )
        return
    server = str(cluster.get("server", ""))
    if server.rstrip("/") != pin.rstrip("/"):
        raise NotAllowedError(
            f"kube context {context!r} points at {server!r}, not at the pinned {pin!r}: this "
            "is another cluster (or the pin is stale); refusing"
        )


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
    _check_pin(path, context, config.kube_allowed_servers.get(context))
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


def _cidrs(rds_cidrs: Sequence[str] | str | None) -> list[str]:
    """`kube_rds_cidr` as a list (a single string is one CIDR, as the key once was)."""
    if rds_cidrs is None:
        return []
    return [rds_cidrs] if isinstance(rds_cidrs, str) else list(rds_cidrs)


def network_policy_for(
    edge: str, namespace: str, rds_cidrs: Sequence[str] | str | None
) -> dict[str, Any]:
    """The NetworkPolicy that cuts `edge`: the source pods keep every egress but the edge's.

    For `mlflow-rds` with RDS CIDRs (`kube_rds_cidr`: every subnet of the RDS subnet group,
    one per zone it spans), the outside world stays open except each of them: one ipBlock per
    address family (`0.0.0.0/0` except the IPv4 CIDRs, `::/0` except the IPv6 ones).
    """
    source, destination = _edge(edge)
    cidrs = _cidrs(rds_cidrs)
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
    if edge == EDGE_MLFLOW_RDS and cidrs:
        for everything, version in (("0.0.0.0/0", 4), ("::/0", 6)):
            excepted = [c for c in cidrs if ipaddress.ip_network(c).version == version]
            block: dict[str, Any] = {"cidr": everything}
            if excepted:
                block["except"] = excepted
            allowed.append({"ipBlock": block})
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


def network_chaos_for(
    edge: str,
    namespace: str,
    latency_ms: int,
    ttl_seconds: float,
    rds_cidrs: Sequence[str] | str | None = None,
) -> dict[str, Any]:
    """The Chaos Mesh NetworkChaos that delays `edge`; Chaos Mesh ends it after the TTL itself.

    Which side carries the delay. Chaos Mesh puts a netem qdisc on the egress of pods and
    filters it by destination IP: `direction: to` delays what the `selector` pods send to the
    `target` pods' IPs (or `externalTargets`), `from` what the target pods send to the
    selector pods' IPs (chaos-mesh controllers/networkchaos: applyTc(sources, targets) for
    `to`, applyTc(targets, sources) for `from`). The recommender reaches MLflow through the
    Service `mlflow`: its packets leave its pod addressed to the ClusterIP, which kube-proxy
    rewrites to an MLflow pod IP only in the node's network namespace, after the pod's qdisc.
    So "selector: recommenders, direction: to, target: MLflow pods" filters on MLflow pod IPs
    that the recommender's packets never carry there, and delays nothing
    (chaos-mesh/chaos-mesh#1227, where a ClusterIP as externalTarget "did not play well"
    either; it would also miss socket-level load balancing such as Cilium's, where the pod
    sends to the MLflow pod IP itself).
    The replies are addressed to the caller's pod IP on every datapath (no SNAT for
    pod-to-Service traffic). Hence the edge's *destination* pods are the selector, with
    `direction: to` and the *source* pods as target: every response (and SYN-ACK) MLflow
    sends a recommender waits `latency_ms`, and nothing else MLflow sends (its database
    queries, Prometheus' scrapes, the kubelet's probes) does, so the fault stays on its edge.
    A request on a kept-alive connection is `latency_ms` slower, a new connection's first one
    twice that (the handshake's SYN-ACK too).

    `mlflow-rds` with `rds_cidrs` (RDS, outside the cluster: no pod to select, and no Service
    in between, the endpoint resolves to the instance's address): the delay goes on MLflow's
    egress to those CIDRs (`externalTargets`, which Chaos Mesh only honours with `to`).

    Built here rather than by chaosk8s's `add_latency`, which cannot set `duration`.
    """
    source, destination = _edge(edge)
    cidrs = _cidrs(rds_cidrs) if edge == EDGE_MLFLOW_RDS else []
    ns_of = {"namespaces": [namespace]}
    where: dict[str, Any] = (
        {
            "selector": {**ns_of, "labelSelectors": {APP_LABEL: source}},
            "direction": "to",
            "externalTargets": cidrs,
        }
        if cidrs
        else {
            "selector": {**ns_of, "labelSelectors": {APP_LABEL: destination}},
            "direction": "to",
            "target": {
                "mode": "all",
                "selector": {**ns_of, "labelSelectors": {APP_LABEL: source}},
            },
        }
    )
    return {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "NetworkChaos",
        "metadata": {
            "name": f"helius-chaos-{edge}-latency",
            "namespace": namespace,
            "labels": {FAULT_LABEL: "true", "helius.chaos/edge": edge},
        },
        "spec": {
            "action": "delay",
            "mode": "all",
            **where,
            "delay": {"latency": f"{latency_ms}ms"},
            "duration": f"{max(1, round(ttl_seconds))}s",
        },
    }


def _restarts(pod: Any) -> int:
    """How often the pod's containers were restarted in place (the kubelet keeps the pod and its
    name on a liveness or OOM restart and counts it in `containerStatuses[].restartCount`);
    init containers are not counted (they run before the pod serves)."""
    statuses = (pod.status.container_statuses or []) if pod.status else []
    return sum(int(s.restart_count or 0) for s in statuses)


def _expiry(now: float, seconds: float, what: str) -> str:
    """The `expires-at` of a fault that lasts `seconds` from `now` (one writer for every
    fault: k8s_names.expires_at_value), or TargetError before anything is sent."""
    try:
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"{what} must be a finite number of seconds >= 0, not {seconds!r}")
        return expires_at_value(now + seconds)
    except (TypeError, ValueError) as exc:
        raise TargetError(f"{_one_line(exc)}; the reaper reverts the fault at that time") from None


def _original_replicas(deployment: str, value: str) -> int:
    """The replicas in a Deployment's `original-replicas` annotation, or TargetError."""
    replicas = parse_replicas(value)
    if replicas is None:
        raise TargetError(
            f"the Deployment {deployment} carries a malformed {ANNOT_ORIGINAL}={value!r} (not a "
            f"whole number); set its replicas by hand, then `kubectl annotate deployment "
            f"{deployment} {ANNOT_ORIGINAL}- {ANNOT_EXPIRES}-`"
        )
    return replicas


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
        self._rds_cidrs = list(config.kube_rds_cidr)
        self._all_namespaces = config.kube_drain_all_namespaces
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

    @staticmethod
    def _zones_of(core: k8s.CoreV1Api) -> list[str]:
        nodes: list[Any] = core.list_node().items
        return sorted({z for n in nodes if (z := (n.metadata.labels or {}).get(ZONE_LABEL))})

    def zones(self) -> list[str]:
        """The cluster's zones: the values of its nodes' `topology.kubernetes.io/zone`."""
        with self._calling(f"list the nodes labelled {ZONE_LABEL}"):
            return self._zones_of(k8s.CoreV1Api(self._api()))

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
            if pod.metadata.deletion_timestamp is not None:
                continue  # terminating: out of the Service already, and going away
            pod_zone = zones.get(pod.spec.node_name) if pod.spec.node_name else None
            if zone is not None and pod_zone != zone:
                continue
            conditions = (pod.status.conditions or []) if pod.status else []
            ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
            out.append(PodInfo(pod.metadata.name, app, pod_zone, ready, _restarts(pod)))
        return out

    def kill_pods(
        self,
        app: str,
        count: int | None = None,
        zone: str | None = None,
        grace_period_seconds: int | None = 0,
    ) -> list[str]:
        """Delete the pods with `gracePeriodSeconds` = `grace_period_seconds`.

        0 (default) is the closest the API offers to SIGKILL (what Chaos Mesh's pod-kill does
        too): the pod object is gone at once (out of the Endpoints, replaced by its
        controller at once) and the kubelet stops its containers with its floor of 2 s
        (SIGTERM, SIGKILL 2 s later) instead of `terminationGracePeriodSeconds` (20-30 s
        here). None is a graceful delete with the pod's own grace period, n > 0 one of n s.
        """
        grace = check_grace_period(grace_period_seconds)
        selector = f"{APP_LABEL}={app}"
        if zone is None:
            with self._calling(f"delete the pods labelled {selector}"):
                killed: list[str] = terminate_pods(
                    label_selector=selector,
                    all=count is None,
                    qty=count or 1,
                    grace_period=-1 if grace is None else grace,
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
                    grace_period=-1 if grace is None else grace,
                    ns=self._ns,
                    secrets=self._secrets,
                )
        return names

    # ---------------------------------------------------------------- scale
    def scale(self, app: str, replicas: int, ttl_seconds: float) -> FaultRef:
        name = self._deployment(app)
        now = time.time()
        expires = _expiry(now, ttl_seconds, "ttl_seconds")
        with self._calling(f"scale the Deployment {name} to {replicas}"):
            apps = k8s.AppsV1Api(self._api())
            current: Any = apps.read_namespaced_deployment(name, self._ns)
            annotations = current.metadata.annotations or {}
            original = annotations.get(ANNOT_ORIGINAL, str(current.spec.replicas))
            restore_to = _original_replicas(name, original)
            apps.patch_namespaced_deployment(
                name,
                self._ns,
                {"metadata": {"annotations": {ANNOT_ORIGINAL: original, ANNOT_EXPIRES: expires}}},
            )
            scale_deployment(name, replicas, ns=self._ns, secrets=self._secrets)
        return FaultRef(
            id=f"scale-{name}",
            kind="scale",
            target=app,
            started_at=now,
            expires_at=now + ttl_seconds,
            details={"replicas": replicas, "original_replicas": restore_to},
        )

    def restore_scale(self, app: str) -> list[str]:
        name = self._deployment(app)
        with self._calling(f"restore the replicas of the Deployment {name}"):
            apps = k8s.AppsV1Api(self._api())
            current: Any = apps.read_namespaced_deployment(name, self._ns)
            original = (current.metadata.annotations or {}).get(ANNOT_ORIGINAL)
            if original is None:
                return []
            restored = _original_replicas(name, original)
            scale_deployment(name, restored, ns=self._ns, secrets=self._secrets)
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
        expires = _expiry(now, ttl_seconds, "ttl_seconds")
        if mode == "latency":
            name = f"helius-chaos-{edge}-latency"
            body = network_chaos_for(
                edge, self._ns, latency_ms or 500, ttl_seconds, self._rds_cidrs
            )
            body["metadata"]["annotations"] = {ANNOT_EXPIRES: expires}
            with self._calling(f"create the Chaos Mesh NetworkChaos {name} (needs Chaos Mesh)"):
                try:
                    k8s.CustomObjectsApi(self._api()).create_namespaced_custom_object(
                        "chaos-mesh.org", "v1alpha1", self._ns, "networkchaos", body
                    )
                except ApiException as exc:
                    if exc.status != 409:  # already there: the fault is in place
                        raise
        else:
            policy = network_policy_for(edge, self._ns, self._rds_cidrs)
            policy["metadata"]["annotations"] = {ANNOT_EXPIRES: expires}
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
        """Cordon the zone's nodes, then evict the namespace's pods there (PDBs respected).

        Only nodes this call made unschedulable are recorded (annotation ANNOT_CORDONED on the
        node, with ANNOT_EXPIRES): a node an operator had cordoned stays theirs. Evictions that
        a PDB refuses (429) are retried until they pass or `ttl_seconds` runs out; the call
        returns once every evicted pod is gone, so the zone is really empty of the system.
        """
        now = time.time()
        expires = _expiry(now, ttl_seconds, "ttl_seconds")
        deadline = time.monotonic() + ttl_seconds
        selector = f"{ZONE_LABEL}={zone}"
        with self._calling(f"cordon the nodes labelled {selector}"):
            core = k8s.CoreV1Api(self._api())
            nodes: list[Any] = core.list_node(label_selector=selector).items
            if not nodes:
                raise TargetError(
                    f"no node is labelled {selector} (the cluster's zones: "
                    f"{self._zones_of(core) or 'none, no node has the label'}); set helius_zone "
                    "(HELIUS_ZONE, or --var helius_zone=...) to one of them"
                )
            cordoned, theirs = [], []
            for node in nodes:
                ours = ANNOT_CORDONED in (node.metadata.annotations or {})
                if node.spec and node.spec.unschedulable and not ours:
                    theirs.append(node.metadata.name)
                    continue
                core.patch_node(
                    node.metadata.name,
                    {
                        "metadata": {
                            "annotations": {
                                ANNOT_CORDONED: f"drain-{zone}",
                                ANNOT_EXPIRES: expires,
                            }
                        },
                        "spec": {"unschedulable": True},
                    },
                )
                cordoned.append(node.metadata.name)
        names = sorted(n.metadata.name for n in nodes)
        evicted = self._evict_from(core, names, deadline)
        return FaultRef(
            id=f"drain-{zone}",
            kind="drain",
            target=zone,
            started_at=now,
            expires_at=now + ttl_seconds,
            details={
                "nodes": names,
                "cordoned": sorted(cordoned),
                "already_cordoned": sorted(theirs),
                "evicted": evicted,
            },
        )

    def _pods_to_evict(self, core: k8s.CoreV1Api, node: str) -> list[Any]:
        """The pods a drain of `node` evicts: the namespace's (or all), but no DaemonSet's,
        static, terminating or harness (label HARNESS_LABEL) pod."""
        on_node = f"spec.nodeName={node}"
        pods: list[Any] = (
            core.list_pod_for_all_namespaces(field_selector=on_node).items
            if self._all_namespaces
            else core.list_namespaced_pod(self._ns, field_selector=on_node).items
        )
        chosen = []
        for pod in pods:
            meta = pod.metadata
            owners = {o.kind for o in meta.owner_references or []}
            if (
                "DaemonSet" in owners
                or MIRROR_ANNOTATION in (meta.annotations or {})
                or meta.deletion_timestamp is not None
                or (meta.labels or {}).get(HARNESS_LABEL) == "true"
            ):
                continue
            chosen.append(pod)
        return chosen

    def _evict_from(self, core: k8s.CoreV1Api, nodes: list[str], deadline: float) -> list[str]:
        pending: dict[tuple[str, str], str] = {}  # (namespace, name) -> uid
        with self._calling(f"list the pods on the nodes {nodes}"):
            for node in nodes:
                for pod in self._pods_to_evict(core, node):
                    pending[(pod.metadata.namespace, pod.metadata.name)] = pod.metadata.uid
        evicted: dict[tuple[str, str], str] = {}
        refused: dict[tuple[str, str], str] = {}
        while True:
            for key in sorted(set(pending) - set(evicted)):
                namespace, name = key
                body = k8s.V1Eviction(metadata=k8s.V1ObjectMeta(name=name, namespace=namespace))
                with self._calling(f"evict the pod {namespace}/{name}"):
                    try:
                        core.create_namespaced_pod_eviction(name, namespace, body)
                        evicted[key] = pending[key]
                    except ApiException as exc:
                        if exc.status == 404:  # gone already
                            evicted[key] = pending[key]
                        elif exc.status == 429:  # a PDB says not now: retry
                            refused[key] = _api_message(exc)
                        else:
                            raise
            gone = self._gone(core, evicted)
            if len(gone) == len(pending):
                return sorted(f"{ns}/{name}" for ns, name in pending)
            if time.monotonic() >= deadline:
                left = sorted(f"{ns}/{name}" for ns, name in set(pending) - set(gone))
                blocked = {f"{ns}/{n}": why for (ns, n), why in refused.items()}
                raise TargetError(
                    f"drain of {nodes} did not empty them before the TTL: {left} still there "
                    f"(refused evictions: {blocked or 'none'}); the nodes stay cordoned until "
                    "uncordon_zone, the reaper or the TTL; check the PodDisruptionBudgets"
                )
            time.sleep(EVICTION_RETRY_SECONDS)

    def _gone(
        self, core: k8s.CoreV1Api, evicted: dict[tuple[str, str], str]
    ) -> set[tuple[str, str]]:
        """The evicted pods that no longer exist (or exist under the name with a new uid)."""
        gone = set()
        for (namespace, name), uid in evicted.items():
            with self._calling(f"read the pod {namespace}/{name}"):
                try:
                    pod: Any = core.read_namespaced_pod(name, namespace)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    gone.add((namespace, name))
                    continue
            if pod.metadata.uid != uid:
                gone.add((namespace, name))
        return gone

    def uncordon_zone(self, zone: str) -> list[str]:
        """Uncordon the zone's nodes that a drain cordoned (annotation), and only those; then
        restart (rolling, as `kubectl rollout restart`) each Deployment of kube_deployments
        with no pod left in the zone, so its pods spread over every zone again.

        Uncordoning alone moves nothing back: the drained replicas stay in the other zones
        (the scheduler places new pods only, and the spread is only checked then), and the
        system would lose that zone's share of every later fault. The local stack brings a
        zone's pods back at uncordon; this is the cluster's equivalent. Safe to run twice.
        """
        selector = f"{ZONE_LABEL}={zone}"
        with self._calling(f"uncordon the nodes labelled {selector}"):
            core = k8s.CoreV1Api(self._api())
            listed: list[Any] = core.list_node(label_selector=selector).items
            ours = [n for n in listed if ANNOT_CORDONED in (n.metadata.annotations or {})]
            for node in ours:
                core.patch_node(node.metadata.name, UNCORDON_PATCH)
        if ours:
            self._respread(zone)
        return [f"drain-{zone}"] if ours else []

    def _respread(self, zone: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for app, deployment in sorted(self._deployments.items()):
            if any(p.zone == zone for p in self.list_pods(app)):
                continue
            with self._calling(f"restart the Deployment {deployment} to spread it again"):
                k8s.AppsV1Api(self._api()).patch_namespaced_deployment(
                    deployment,
                    self._ns,
                    {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}},
                )

    # ---------------------------------------------------------------- load
    def start_load(
        self,
        users: int,
        spawn_rate: float,
        duration_seconds: float,
        workers: int = 2,
        host: str | None = None,
        shape: str = "steady",
        request_timeout_seconds: float = 5.0,
        startup_timeout_seconds: float = 120.0,
        rate: float | None = None,
        new_connection_share: float | None = None,
    ) -> dict[str, Any]:
        """Start the in-cluster Locust (manifests/components/chaos-harness/loadgen.yaml):
        settings into the ConfigMap, master to 1 and workers to `workers`, both annotated to go
        back to 0 at `duration_seconds` (stop_load, or the reaper if the runner is gone).
        `rate` (requests/s for the whole load) and `new_connection_share` are the locustfile's
        pacing and churn. Returns once the master and every worker are ready."""
        now = time.time()
        expires = now + duration_seconds
        expires_at = _expiry(now, duration_seconds, "duration_seconds")
        settings = (
            {
                "LOCUST_USERS": str(users),
                "LOCUST_SPAWN_RATE": str(spawn_rate),
                "LOCUST_EXPECT_WORKERS": str(workers),
                "LOCUST_REQUEST_TIMEOUT": str(request_timeout_seconds),
                "LOCUST_SHAPE": shape,
            }
            | ({"LOCUST_HOST": host} if host else {})
            | ({"LOCUST_TARGET_RPS": f"{rate:g}"} if rate is not None else {})
            | (
                {"LOCUST_NEW_CONNECTION_SHARE": f"{new_connection_share:g}"}
                if new_connection_share is not None
                else {}
            )
        )
        with self._calling("start the in-cluster load generator"):
            apps = k8s.AppsV1Api(self._api())
            master: Any = apps.read_namespaced_deployment(LOADGEN_MASTER, self._ns)
            if master.spec.replicas:
                raise TargetError(
                    f"the load generator is already running (Deployment {LOADGEN_MASTER} has "
                    f"{master.spec.replicas} replica); run stop_load first"
                )
            k8s.CoreV1Api(self._api()).patch_namespaced_config_map(
                LOADGEN_SETTINGS, self._ns, {"data": settings}
            )
            for name, replicas in ((LOADGEN_WORKER, workers), (LOADGEN_MASTER, 1)):
                apps.patch_namespaced_deployment(
                    name,
                    self._ns,
                    {
                        "metadata": {
                            "annotations": {ANNOT_ORIGINAL: "0", ANNOT_EXPIRES: expires_at}
                        },
                        "spec": {"replicas": replicas},
                    },
                )
        deadline = time.monotonic() + startup_timeout_seconds
        while (ready := sum(p.ready for p in self.list_pods(App.LOADGEN.value))) < workers + 1:
            if time.monotonic() >= deadline:
                self.stop_load()
                raise TargetError(
                    f"the load generator did not get ready within {startup_timeout_seconds:.0f} s "
                    f"({ready} of {workers + 1} pods ready), so it was stopped; see "
                    f"`kubectl -n {self._ns} describe pods -l {APP_LABEL}={App.LOADGEN.value}`"
                )
            time.sleep(1.0)
        return {"workers": workers, "expires_at": expires, "settings": settings}

    def stop_load(self) -> dict[str, Any]:
        """Scale the load generator to 0 (safe to run twice); `stopped` if it was running."""
        with self._calling("stop the in-cluster load generator"):
            apps = k8s.AppsV1Api(self._api())
            master: Any = apps.read_namespaced_deployment(LOADGEN_MASTER, self._ns)
            running = bool(master.spec.replicas)
            for name in (LOADGEN_MASTER, LOADGEN_WORKER):
                apps.patch_namespaced_deployment(
                    name,
                    self._ns,
                    {
                        "metadata": {"annotations": {ANNOT_ORIGINAL: None, ANNOT_EXPIRES: None}},
                        "spec": {"replicas": 0},
                    },
                )
        return {"stopped": running}

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
