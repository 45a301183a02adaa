"""A fake Kubernetes API server on 127.0.0.1 port 0, for the kubernetes driver's tests.

No Kubernetes API server (nor kind, nor a container engine) can run where this harness is
developed (no kube-apiserver/etcd in the reachable registries either), so this stands in for
one. The real `kubernetes` client and the real chaosk8s functions talk to it over HTTP through
a kubeconfig, exactly as they would to a cluster.

Two ways to build its world:

- by hand (`add_node`, `add_pod`, `add_deployment`): objects with no controller behind them,
  to check exactly what the driver sends;
- `FakeKubeAPI.from_overlay(...)`: the objects `kubectl kustomize manifests/overlays/kind`
  renders (Deployments, StatefulSets, PDBs, NetworkPolicies: the real labels, volumes and
  budgets) on the nodes of `kind-cluster.yaml`, plus kube-system pods (coredns on a zone-a
  worker, a kube-proxy DaemonSet pod per node) that a helius drain must leave alone.

What it models: graceful deletion (a deleted or evicted pod gets a `deletionTimestamp` and
is gone `grace_seconds` later); the eviction API enforcing PodDisruptionBudgets (429 when
the budget has no disruption left, counted from ready, non-terminating pods and the
controllers' replicas, as the disruption controller does); Deployment and StatefulSet
controllers that keep `spec.replicas` pods that are not terminating, scheduling a new pod on
a schedulable node (not cordoned, not tainted, admitted by its `nodeSelector` and required
node affinity, e.g. the kind overlay's PostgreSQL pinned to zone-c) of the zone with the
fewest of its pods (`topologySpreadConstraints` with `nodeTaintsPolicy: Honor`, as the
manifests ask), Ready `ready_seconds` after creation; optionally RBAC (`authorize`): a
bearer token bound to Role / ClusterRole rules, checked per request (verb, API group,
resource, subresource, namespace), 403 otherwise. Container restarts as the kubelet does
them after a failed liveness probe (`restart_container`): the pod keeps its name and uid,
its `containerStatuses[].restartCount` grows, and it is not Ready until the restarted
container is up again (`restart_seconds`, or the app's cold start); who decides that a probe
failed is the caller (k8s_fake_metrics.SimulatedSystem evaluates the manifests' liveness and
readiness probes against its simulated endpoints and calls `restart_container` / `set_ready`).
Time advances lazily: each request first settles what is due.

What it does not do: admission and validation of specs, strategic-merge semantics beyond a
JSON merge patch, watches, images, probes (readiness is a timer), any enforcement of a
NetworkPolicy, or the Chaos Mesh controller; probes are not run here (readiness is a timer
unless a caller sets it: `readiness_gated`). Tests against it prove what the driver sends,
how it reads the answers, and how it copes with the API's rules for eviction and deletion,
not what a real cluster's controllers and network do with them.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.config import kube_config

from support.http import serve as serve_handler

ZONE = "topology.kubernetes.io/zone"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REPO = Path(__file__).resolve().parents[2]
KIND_OVERLAY = REPO / "manifests" / "overlays" / "kind"


@dataclass(frozen=True)
class Request:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    content_type: str | None
    token: str | None


@dataclass
class _Failure:
    method: str
    path: re.Pattern[str]
    status: int
    reason: str
    message: str


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A `Status` object, as the API server answers an error."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386 JSON merge patch (null deletes a key)."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _selected(labels: dict[str, str], selector: str | None) -> bool:
    """Equality-based label selector (`k=v`, `k==v`, `k!=v`, comma-separated)."""
    for term in (selector or "").split(","):
        if not term:
            continue
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        else:
            key, value = re.split("==?", term, maxsplit=1)
            if labels.get(key) != value:
                return False
    return True


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector object (matchLabels; matchExpressions In/NotIn/Exists)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if (op == "In" and labels.get(key) not in values) or (
            op == "NotIn" and labels.get(key) in values
        ):
            return False
        if op == "Exists" and key not in labels:
            return False
    return True


def _is_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _container_status(container: dict[str, Any], ready: bool, restarts: int) -> dict[str, Any]:
    """A `ContainerStatus` as the kubelet reports it (the fields the client requires)."""
    return {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "ready": ready,
        "started": ready,
        "restartCount": restarts,
        "state": {"running": {}} if ready else {"waiting": {"reason": "ContainerCreating"}},
    }


def _absolute(value: int | str, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return -(-total * int(value[:-1]) // 100)
    return int(value)


def _field(obj: dict[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _fields_selected(obj: dict[str, Any], selector: str | None) -> bool:
    for term in (selector or "").split(","):
        if term:
            key, value = term.split("=", 1)
            if _field(obj, key) != value:
                return False
    return True


@dataclass(frozen=True)
class Rule:
    """One RBAC PolicyRule, flattened."""

    groups: frozenset[str]
    resources: frozenset[str]  # "pods", "pods/eviction", "*"
    verbs: frozenset[str]
    namespace: str | None  # a Role's namespace; None for a ClusterRole (cluster-wide)
    # resourceNames: when set, only requests naming one of them match (as the authorizer:
    # a list or a create names no object, so such a rule never grants them)
    names: frozenset[str] = frozenset()


def rules_of(role: dict[str, Any]) -> list[Rule]:
    """The rules of a rendered Role or ClusterRole."""
    namespace = role["metadata"].get("namespace") if role["kind"] == "Role" else None
    return [
        Rule(
            frozenset(r.get("apiGroups", [])),
            frozenset(r.get("resources", [])),
            frozenset(r.get("verbs", [])),
            namespace,
            frozenset(r.get("resourceNames") or []),
        )
        for r in role.get("rules") or []
    ]


_VERBS = {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}
_API_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<resource>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$"
)


def attributes(request: Request) -> tuple[str, str, str, str | None]:
    """(verb, API group, resource[/subresource], namespace) of a request, as RBAC sees it."""
    m = _API_PATH.match(request.path)
    if m is None:
        return _VERBS.get(request.method, "?"), "?", request.path, None
    verb = _VERBS.get(request.method, "?")
    if verb == "get" and m["name"] is None:
        verb = "list"
    resource = m["resource"] + (f"/{m['sub']}" if m["sub"] else "")
    return verb, m["group"] or "", resource, m["ns"]


def requested_name(request: Request) -> str | None:
    """The object a request names (None for a list or a create), as RBAC's resourceNames see it."""
    m = _API_PATH.match(request.path)
    return m["name"] if m is not None else None


def allowed(rules: list[Rule], request: Request) -> bool:
    verb, group, resource, namespace = attributes(request)
    name = requested_name(request)
    return any(
        (group in r.groups or "*" in r.groups)
        and (resource in r.resources or "*" in r.resources)
        and (verb in r.verbs or "*" in r.verbs)
        and (r.namespace is None or r.namespace == namespace)
        and (not r.names or name in r.names)
        for r in rules
    )


@functools.cache
def _render(overlay: Path) -> str:
    """`kubectl kustomize` of the overlay (once per test session: it takes a second)."""
    return subprocess.run(
        ["kubectl", "kustomize", str(overlay)], check=True, capture_output=True, text=True
    ).stdout


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class FakeKubeAPI:
    """State and record of the fake API server. Build objects with `add_*` or `from_overlay`."""

    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    statefulsets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pdbs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    policies: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    configmaps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    chaos: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    chaos_mesh: bool = False
    # graceful deletion: a deleted pod lingers (terminating) this long; 0 = gone at once
    grace_seconds: float = 0.0
    # a pod a controller creates is Ready this long after its creation (per `app` label in
    # `ready_seconds_by_app`, e.g. MLflow's slower cold start; `ready_seconds` otherwise)
    ready_seconds: float = 0.0
    ready_seconds_by_app: dict[str, float] = field(default_factory=dict)
    # a new pod with a readiness probe is Ready only when the caller sees that probe pass
    # (`set_ready`), after its cold start, as the kubelet does; False: Ready at the cold start
    readiness_gated: bool = False
    # a container restarted in place is Ready again this long after the restart (None: the
    # app's cold start, as above)
    restart_seconds: float | None = None
    # Deployments/StatefulSets whose pods a controller keeps (those from `from_overlay`)
    controlled: set[tuple[str, str, str]] = field(default_factory=set)  # (kind, ns, name)
    # RBAC: bearer token -> rules; tokens not listed are refused when `rbac` is on
    rbac: bool = False
    grants: dict[str, list[Rule]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    _failures: list[_Failure] = field(default_factory=list)
    _gone_at: dict[tuple[str, str], float] = field(default_factory=dict)
    _ready_at: dict[tuple[str, str], float] = field(default_factory=dict)
    _probe_gated: set[tuple[str, str]] = field(default_factory=set)  # restarted, probe decides
    _uid: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)

    # ------------------------------------------------------------ building the world
    def _next_uid(self) -> str:
        self._uid += 1
        return f"00000000-0000-0000-0000-{self._uid:012d}"

    def add_node(
        self, name: str, zone: str | None, taints: list[dict[str, str]] | None = None
    ) -> None:
        self.nodes[name] = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "uid": self._next_uid(),
                "labels": {ZONE: zone} if zone else {},
            },
            "spec": {"taints": taints} if taints else {},
        }

    def add_pod(
        self,
        namespace: str,
        name: str,
        node: str,
        labels: dict[str, str],
        owner_kind: str = "ReplicaSet",
        ready: bool = True,
        owner_name: str | None = None,
        spec: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        pod: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": self._next_uid(),
                "creationTimestamp": _now_iso(),
                "labels": dict(labels),
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": owner_kind,
                        "name": owner_name or f"{labels.get('app', name)}-owner",
                        "uid": self._next_uid(),
                        "controller": True,
                    }
                ],
            },
            "spec": copy.deepcopy(spec)
            if spec
            else {
                "containers": [{"name": "main", "image": "example/main:1"}],
                "volumes": [{"name": "token", "projected": {"sources": []}}],
            },
            "status": {"phase": "Pending", "conditions": []},
        }
        if node:
            pod["spec"]["nodeName"] = node
        pod["status"]["containerStatuses"] = [
            _container_status(c, ready=False, restarts=0) for c in pod["spec"]["containers"]
        ]
        self.pods[(namespace, name)] = pod
        self.set_ready(namespace, name, ready)
        return pod

    def set_ready(self, namespace: str, name: str, ready: bool) -> None:
        """Set a pod's Ready condition and its containers' `ready` (what its readiness probe
        would say); restart counts are kept."""
        with self.lock:
            pod = self.pods[(namespace, name)]
            running = bool(pod["spec"].get("nodeName"))
            is_ready = ready and running
            previous = {
                c["name"]: c.get("restartCount", 0)
                for c in pod.get("status", {}).get("containerStatuses") or []
            }
            pod["status"] = {
                "phase": "Running" if running else "Pending",
                "conditions": [{"type": "Ready", "status": "True" if is_ready else "False"}],
                "containerStatuses": [
                    _container_status(c, is_ready, previous.get(c["name"], 0))
                    for c in pod["spec"]["containers"]
                ],
            }
            self._ready_at.pop((namespace, name), None)
            self._probe_gated.discard((namespace, name))

    def restart_container(self, namespace: str, name: str, container: str | None = None) -> None:
        """The kubelet restarting a container in place (a failed liveness probe, an OOM kill):
        same pod, same name, `restartCount` + 1, not Ready while the container starts again
        (`restart_seconds`, else the app's cold start). A container with a readiness probe stays
        not Ready after that until the caller sees its probe pass (`set_ready`), as the kubelet
        does; one without is Ready once it is up."""
        with self.lock:
            pod = self.pods[(namespace, name)]
            statuses = pod["status"]["containerStatuses"]
            target = container or statuses[0]["name"]
            for status in statuses:
                if status["name"] == target:
                    status["restartCount"] += 1
            self.set_ready(namespace, name, False)
            app = pod["metadata"]["labels"].get("app", "")
            delay = self.restart_seconds
            if delay is None:
                delay = self.ready_seconds_by_app.get(app, self.ready_seconds)
            self._ready_at[(namespace, name)] = time.monotonic() + delay
            if any("readinessProbe" in c for c in pod["spec"]["containers"]):
                self._probe_gated.add((namespace, name))

    def restarts(self, namespace: str, name: str) -> int:
        """The pod's restart count (summed over its containers)."""
        with self.lock:
            statuses = self.pods[(namespace, name)]["status"]["containerStatuses"]
            return sum(int(c["restartCount"]) for c in statuses)

    def starting(self, namespace: str, name: str) -> bool:
        """A pod whose (re)started container is not up yet (its Ready timer is pending)."""
        with self.lock:
            return (namespace, name) in self._ready_at

    def add_deployment(self, namespace: str, name: str, replicas: int) -> None:
        self.deployments[(namespace, name)] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "uid": self._next_uid()},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "main", "image": "example/main:1"}]},
                },
            },
        }

    @classmethod
    def from_overlay(
        cls,
        overlay: Path = KIND_OVERLAY,
        grace_seconds: float = 0.3,
        ready_seconds: float = 0.3,
    ) -> FakeKubeAPI:
        """The rendered overlay on kind's nodes, its controllers' pods already Ready."""
        rendered = _render(overlay)
        fake = cls(grace_seconds=grace_seconds)
        cluster = yaml.safe_load((overlay / "kind-cluster.yaml").read_text())
        cluster_name = cluster.get("name", "kind")
        workers = 0
        for node in cluster["nodes"]:
            if node["role"] == "control-plane":
                name = f"{cluster_name}-control-plane"
                taint = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
                fake.add_node(name, None, taints=[taint])
            else:
                workers += 1
                name = f"{cluster_name}-worker" + (str(workers) if workers > 1 else "")
                fake.add_node(name, (node.get("labels") or {}).get(ZONE))
        for obj in yaml.safe_load_all(rendered):
            key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            if obj["kind"] == "Deployment":
                fake.deployments[key] = obj
                fake.controlled.add(("Deployment", *key))
            elif obj["kind"] == "StatefulSet":
                fake.statefulsets[key] = obj
                fake.controlled.add(("StatefulSet", *key))
            elif obj["kind"] == "PodDisruptionBudget":
                fake.pdbs[key] = obj
            elif obj["kind"] == "NetworkPolicy":
                fake.policies[key] = obj
            elif obj["kind"] == "ConfigMap":
                fake.configmaps[key] = obj
        # what any cluster runs besides the system: a drain of helius must leave these alone
        zone_a = min(
            n for n, o in fake.nodes.items() if o["metadata"]["labels"].get(ZONE) == "zone-a"
        )
        fake.add_pod(
            "kube-system",
            "coredns-5d78c-x1",
            zone_a,
            {"k8s-app": "kube-dns"},
            owner_name="coredns-5d78c",
        )
        for node in sorted(fake.nodes):
            fake.add_pod(
                "kube-system",
                f"kube-proxy-{node}",
                node,
                {"k8s-app": "kube-proxy"},
                owner_kind="DaemonSet",
                owner_name="kube-proxy",
            )
        with fake.lock:
            fake.settle()
        fake.ready_seconds = ready_seconds
        return fake

    def fail(self, method: str, path_regex: str, code: int, reason: str, message: str) -> None:
        """From now on, answer `method` requests whose path matches with an error Status."""
        self._failures.append(_Failure(method, re.compile(path_regex), code, reason, message))

    def authorize(self, token: str, roles: list[dict[str, Any]]) -> None:
        """Turn RBAC on: `token` gets the rules of these rendered Roles/ClusterRoles."""
        self.rbac = True
        self.grants[token] = [rule for role in roles for rule in rules_of(role)]

    def sent(self, method: str | None = None, path_regex: str = "") -> list[Request]:
        """The recorded requests, optionally only those of `method` whose path matches."""
        with self.lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and re.search(path_regex, r.path)
            ]

    def live_pods(self, namespace: str, app: str) -> list[dict[str, Any]]:
        """Pods of `app` that are not terminating (after settling what is due)."""
        with self.lock:
            self.settle()
            return [
                p
                for (ns, _), p in sorted(self.pods.items())
                if ns == namespace
                and p["metadata"]["labels"].get("app") == app
                and "deletionTimestamp" not in p["metadata"]
            ]

    def zone_of(self, pod: dict[str, Any]) -> str | None:
        node = self.nodes.get(pod["spec"].get("nodeName", ""))
        return node["metadata"]["labels"].get(ZONE) if node else None

    # ------------------------------------------------------------ the cluster's behaviour
    def settle(self) -> None:
        """Do what is due: pods past their grace period go, pods past ready_seconds are Ready,
        controllers bring their pods back to `spec.replicas`. Call with the lock held."""
        now = time.monotonic()
        for key, at in list(self._gone_at.items()):
            if at <= now:
                self.pods.pop(key, None)
                del self._gone_at[key]
        for key, at in list(self._ready_at.items()):
            if at <= now and key in self.pods:
                if key in self._probe_gated:  # started again; Ready when its probe passes
                    self._probe_gated.discard(key)
                    del self._ready_at[key]
                else:
                    self.set_ready(*key, ready=True)
        for kind, ns, name in sorted(self.controlled):
            owner = (self.deployments if kind == "Deployment" else self.statefulsets).get(
                (ns, name)
            )
            if owner is not None:
                self._reconcile(kind, owner)

    def _owned(self, kind: str, owner: dict[str, Any]) -> list[dict[str, Any]]:
        ns, name = owner["metadata"]["namespace"], owner["metadata"]["name"]
        owner_name = f"{name}-rs" if kind == "Deployment" else name
        return [
            p
            for (pod_ns, _), p in sorted(self.pods.items())
            if pod_ns == ns
            and any(o["name"] == owner_name for o in p["metadata"].get("ownerReferences", []))
        ]

    def _reconcile(self, kind: str, owner: dict[str, Any]) -> None:
        ns = owner["metadata"]["namespace"]
        active = [p for p in self._owned(kind, owner) if "deletionTimestamp" not in p["metadata"]]
        want = int(owner["spec"].get("replicas", 1))
        if kind == "Deployment" and self._roll(owner, active, want):
            return
        for pod in active[want:]:  # scaled down: the newest go (names sort by creation)
            self._delete(ns, pod["metadata"]["name"])
        for _ in range(len(active), want):
            if not self._create(kind, owner, want):
                return

    def _roll(self, owner: dict[str, Any], active: list[dict[str, Any]], want: int) -> bool:
        """A changed pod template (`kubectl rollout restart` stamps an annotation): replace the
        pods one at a time, maxSurge 1 / maxUnavailable 0 as the manifests ask. Of the old pods,
        the one sharing its zone with the most others goes first (ReplicaSet scale-down ranks
        co-located pods first). True while a rollout is in progress."""
        stamp = owner["spec"]["template"]["metadata"].get("annotations", {}).get(RESTARTED_AT)
        old = [p for p in active if p["metadata"].get("annotations", {}).get(RESTARTED_AT) != stamp]
        if not old:
            return False
        new = [p for p in active if p not in old]
        if not all(_is_ready(p) for p in new):
            return True  # wait for the surge pod
        if len(active) <= want:
            self._create("Deployment", owner, want)
            return True

        def crowding(pod: dict[str, Any]) -> int:
            return sum(1 for p in active if self.zone_of(p) == self.zone_of(pod))

        victim = max(old, key=crowding)
        self._delete(owner["metadata"]["namespace"], victim["metadata"]["name"])
        return True

    def _create(self, kind: str, owner: dict[str, Any], want: int) -> bool:
        ns, name = owner["metadata"]["namespace"], owner["metadata"]["name"]
        template = owner["spec"]["template"]
        if kind == "Deployment":
            self._uid += 1
            pod_name, owner_name, owner_kind = (
                f"{name}-rs-{self._uid:05d}",
                f"{name}-rs",
                "ReplicaSet",
            )
        else:
            taken = {p["metadata"]["name"] for p in self._owned(kind, owner)}
            free = [i for i in range(want) if f"{name}-{i}" not in taken]
            if not free:
                return False  # StatefulSet: the old pod with that ordinal is still terminating
            pod_name, owner_name, owner_kind = f"{name}-{free[0]}", name, "StatefulSet"
        node = self._schedule(template, ns)
        pod = self.add_pod(
            ns,
            pod_name,
            node or "",
            template["metadata"].get("labels", {}),
            owner_kind=owner_kind,
            owner_name=owner_name,
            spec=template["spec"],
            ready=False,
        )
        if "annotations" in template["metadata"]:
            pod["metadata"]["annotations"] = copy.deepcopy(template["metadata"]["annotations"])
        if node:
            delay = self.ready_seconds_by_app.get(
                template["metadata"].get("labels", {}).get("app", ""), self.ready_seconds
            )
            self._ready_at[(ns, pod_name)] = time.monotonic() + delay
            probed = any("readinessProbe" in c for c in template["spec"]["containers"])
            if self.readiness_gated and probed:
                self._probe_gated.add((ns, pod_name))  # Ready when the caller's probe passes
            elif delay <= 0:
                self.set_ready(ns, pod_name, True)
        return True

    def _schedulable(self) -> list[str]:
        return sorted(
            name
            for name, node in self.nodes.items()
            if not node["spec"].get("unschedulable")
            and not any(t.get("effect") == "NoSchedule" for t in node["spec"].get("taints") or [])
        )

    def _fits(self, spec: dict[str, Any], node: str) -> bool:
        """The pod spec's `nodeSelector` and required node affinity admit `node` (terms ORed,
        expressions ANDed; In / NotIn / Exists / DoesNotExist on the node's labels)."""
        labels = self.nodes[node]["metadata"].get("labels", {})
        if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
            return False
        required = (
            ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
                "requiredDuringSchedulingIgnoredDuringExecution"
            )
            or {}
        ).get("nodeSelectorTerms")
        if not required:
            return True

        def holds(expr: dict[str, Any]) -> bool:
            key, op, values = expr["key"], expr["operator"], expr.get("values", [])
            return {
                "In": key in labels and labels[key] in values,
                "NotIn": labels.get(key) not in values,
                "Exists": key in labels,
                "DoesNotExist": key not in labels,
            }[op]

        return any(all(holds(e) for e in t.get("matchExpressions") or []) for t in required)

    def _schedule(self, template: dict[str, Any], ns: str) -> str | None:
        """A schedulable node that the pod's node selector / required node affinity admits:
        in the zone (then on the node) with the fewest pods like it (of the same revision,
        when the zone spread has `matchLabelKeys: [pod-template-hash]`)."""
        labels = template["metadata"].get("labels", {})
        app = labels.get("app")
        nodes = [n for n in self._schedulable() if self._fits(template["spec"], n)]
        if not nodes:
            return None
        same = [
            p
            for (pod_ns, _), p in self.pods.items()
            if pod_ns == ns
            and p["metadata"]["labels"].get("app") == app
            and "deletionTimestamp" not in p["metadata"]
        ]
        zone_spread = [
            c
            for c in template["spec"].get("topologySpreadConstraints") or []
            if c.get("topologyKey") == ZONE
        ]
        if any("pod-template-hash" in c.get("matchLabelKeys", []) for c in zone_spread):
            # the revision's pods only (the template's restartedAt stands for the hash)
            stamp = template["metadata"].get("annotations", {}).get(RESTARTED_AT)
            same = [
                p for p in same if p["metadata"].get("annotations", {}).get(RESTARTED_AT) == stamp
            ]

        def load(node: str) -> tuple[int, int, str]:
            zone = self.nodes[node]["metadata"]["labels"].get(ZONE)
            in_zone = sum(1 for p in same if self.zone_of(p) == zone)
            on_node = sum(1 for p in same if p["spec"].get("nodeName") == node)
            return in_zone, on_node, node

        return min(nodes, key=load)

    def _delete(self, ns: str, name: str) -> dict[str, Any]:
        """Graceful deletion: mark the pod terminating; it goes after `grace_seconds`."""
        pod = self.pods[(ns, name)]
        if "deletionTimestamp" not in pod["metadata"]:
            pod["metadata"]["deletionTimestamp"] = _now_iso()
            pod["metadata"]["deletionGracePeriodSeconds"] = int(self.grace_seconds)
            pod["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
            for container in pod["status"].get("containerStatuses") or []:
                container["ready"] = False
            self._ready_at.pop((ns, name), None)
            if self.grace_seconds <= 0:
                self.pods.pop((ns, name))
            else:
                self._gone_at[(ns, name)] = time.monotonic() + self.grace_seconds
        return copy.deepcopy(pod)

    def _disruptions_allowed(self, pdb: dict[str, Any]) -> int:
        """As the disruption controller computes it: healthy pods minus the desired healthy."""
        ns = pdb["metadata"]["namespace"]
        selector = pdb["spec"]["selector"]
        matching = [
            p
            for (pod_ns, _), p in self.pods.items()
            if pod_ns == ns and _selects(selector, p["metadata"]["labels"])
        ]
        healthy = sum(
            1 for p in matching if "deletionTimestamp" not in p["metadata"] and _is_ready(p)
        )
        owners = [*self.deployments.values(), *self.statefulsets.values()]
        expected = sum(
            int(o["spec"].get("replicas", 1))
            for o in owners
            if o["metadata"].get("namespace") == ns
            and _selects(selector, o["spec"]["template"]["metadata"].get("labels", {}))
        ) or len(matching)
        spec = pdb["spec"]
        if "maxUnavailable" in spec:
            desired = expected - _absolute(spec["maxUnavailable"], expected)
        else:
            desired = _absolute(spec.get("minAvailable", 0), expected)
        return healthy - desired

    # ------------------------------------------------------------ answering
    def handle(self, request: Request) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests.append(request)
            self.settle()
            if self.rbac and not allowed(self.grants.get(request.token or "", []), request):
                verb, group, resource, ns = attributes(request)
                where = f' in the namespace "{ns}"' if ns else " at the cluster scope"
                message = (
                    f'{resource} is forbidden: User "{request.token}" cannot {verb} resource '
                    f'"{resource}" in API group "{group}"{where}'
                )
                return 403, status(403, "Forbidden", message)
            for failure in self._failures:
                if failure.method == request.method and failure.path.search(request.path):
                    return failure.status, status(failure.status, failure.reason, failure.message)
            for method, pattern, route in self._routes():
                if method == request.method and (m := re.fullmatch(pattern, request.path)):
                    answer: tuple[int, dict[str, Any]] = route(request, *m.groups())
                    self.settle()  # the controllers react to the change at once
                    return answer
            return 404, status(404, "NotFound", "the server could not find the requested resource")

    def _routes(self) -> list[tuple[str, str, Callable[..., tuple[int, dict[str, Any]]]]]:
        ns = "(?P<ns>[^/]+)"
        name = "(?P<name>[^/]+)"
        return [
            ("GET", f"/api/v1/namespaces/{ns}/pods", self._list_pods),
            ("GET", "/api/v1/pods", lambda r: self._list_pods(r, None)),
            ("GET", f"/api/v1/namespaces/{ns}/pods/{name}", self._read_pod),
            ("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}", self._delete_pod),
            ("POST", f"/api/v1/namespaces/{ns}/pods/{name}/eviction", self._evict),
            ("GET", "/api/v1/nodes", self._list_nodes),
            ("GET", f"/api/v1/nodes/{name}", self._read_node),
            ("GET", f"/api/v1/namespaces/{ns}/configmaps/{name}", self._read_configmap),
            ("PATCH", f"/api/v1/namespaces/{ns}/configmaps/{name}", self._patch_configmap),
            ("GET", f"/apis/chaos-mesh.org/v1alpha1/namespaces/{ns}/networkchaos", self._chaos),
            ("GET", f"/apis/apps/v1/namespaces/{ns}/deployments", self._list_deploys),
            ("GET", f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets", self._list_pdbs),
            ("PATCH", f"/api/v1/nodes/{name}", self._patch_node),
            ("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}", self._read_deploy),
            ("PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}", self._patch_deploy),
            (
                "POST",
                f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
                self._create_policy,
            ),
            (
                "DELETE",
                f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}",
                self._delete_policy,
            ),
            (
                "GET",
                f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
                self._list_policies,
            ),
            ("POST", f"/apis/chaos-mesh.org/v1alpha1/namespaces/{ns}/networkchaos", self._chaos),
            (
                "DELETE",
                f"/apis/chaos-mesh.org/v1alpha1/namespaces/{ns}/networkchaos/{name}",
                self._chaos,
            ),
        ]

    @staticmethod
    def _list(kind: str, items: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        api_version = {
            "NetworkPolicyList": "networking.k8s.io/v1",
            "DeploymentList": "apps/v1",
            "PodDisruptionBudgetList": "policy/v1",
        }.get(kind, "v1")
        return 200, {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"resourceVersion": "1"},
            "items": copy.deepcopy(items),
        }

    @staticmethod
    def _missing(kind: str, name: str) -> tuple[int, dict[str, Any]]:
        return 404, status(404, "NotFound", f'{kind} "{name}" not found')

    def _list_pods(self, r: Request, ns: str | None) -> tuple[int, dict[str, Any]]:
        items = [
            p
            for (pod_ns, _), p in sorted(self.pods.items())
            if (ns is None or pod_ns == ns)
            and _selected(p["metadata"]["labels"], r.query.get("labelSelector"))
            and _fields_selected(p, r.query.get("fieldSelector"))
        ]
        return self._list("PodList", items)

    def _read_pod(self, r: Request, ns: str, name: str) -> tuple[int, dict[str, Any]]:
        pod = self.pods.get((ns, name))
        return (200, copy.deepcopy(pod)) if pod else self._missing("pods", name)

    def _delete_pod(self, r: Request, ns: str, name: str) -> tuple[int, dict[str, Any]]:
        if (ns, name) not in self.pods:
            return self._missing("pods", name)
        return 200, self._delete(ns, name)

    def _evict(self, r: Request, ns: str, name: str) -> tuple[int, dict[str, Any]]:
        pod = self.pods.get((ns, name))
        if pod is None:
            return self._missing("pods", name)
        if "deletionTimestamp" not in pod["metadata"] and _is_ready(pod):
            for pdb in self.pdbs.values():
                if (
                    pdb["metadata"]["namespace"] == ns
                    and _selects(pdb["spec"]["selector"], pod["metadata"]["labels"])
                    and self._disruptions_allowed(pdb) < 1
                ):
                    message = "Cannot evict pod as it would violate the pod's disruption budget."
                    body = status(429, "TooManyRequests", message)
                    body["details"] = {
                        "causes": [
                            {"reason": "DisruptionBudget", "message": pdb["metadata"]["name"]}
                        ]
                    }
                    return 429, body
        self._delete(ns, name)
        return 201, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}

    def _read_configmap(self, r: Request, ns: str, name: str) -> tuple[int, dict[str, Any]]:
        found = self.configmaps.get((ns, name))
        return (200, copy.deepcopy(found)) if found else self._missing("configmaps", name)

    def _patch_configmap(self, r: Request, ns: str, name: str) -> tuple[int, dict[str, Any]]:
        found = self.configmaps.get((ns, name))
        if found is None:
            return self._missing("configmaps", name)
        _merge(found, r.body)
        return 200, copy.deepcopy(found)

    def _read_node(self, r: Request, name: str) -> tuple[int, dict[str, Any]]:
        node = self.nodes.get(name)
        return (200, copy.deepcopy(node)) if node else self._missing("nodes", name)

    def _list_deploys(self, r: Request, ns: str) -> tuple[int, dict[str, Any]]:
        items = [d for (d_ns, _), d in sorted(self.deployments.items()) if d_ns == ns]
        return self._list("DeploymentList", items)

    def _list_pdbs(self, r: Request, ns: str) -> tuple[int, dict[str, Any]]:
        items = [p for (p_ns, _), p in sorted(self.pdbs.items()) if p_ns == ns]
        return self._list("PodDisruptionBudgetList", items)

    def _list_nodes(self, r: Request) -> tuple[int, dict[str, Any]]:
        items = [
            n
            for _, n in sorted(self.nodes.items())
            if _selected(n["metadata"]["labels"], r.query.get("labelSelector"))
            and _fields_selected(n, r.query.get("fieldSelector"))
        ]
        return self._list("NodeList", items)

    def _patch_node(self, r: Request, name: str) -> tuple[int, dict[str, Any]]:
        node = self.nodes.get(name)
        if node is None:
            return self._missing("nodes", name)
        _merge(node, r.body)
        return 200, copy.deepcopy(node)

    def _read_deploy(self, r: Request, ns: str, name: str) -> tuple[int, dict[str, Any]]:
        deployment = self.deployments.get((ns, name))
        return (
            (200, copy.deepcopy(deployment))
            if deployment
            else self._missing("deployments.apps", name)
        )

    def _patch_deploy(self, r: Request, ns: str, name: str) -> tuple[int, dict[str, Any]]:
        deployment = self.deployments.get((ns, name))
        if deployment is None:
            return self._missing("deployments.apps", name)
        _merge(deployment, r.body)
        return 200, copy.deepcopy(deployment)

    def _create_policy(self, r: Request, ns: str) -> tuple[int, dict[str, Any]]:
        name = r.body["metadata"]["name"]
        if (ns, name) in self.policies:
            message = f'networkpolicies.networking.k8s.io "{name}" already exists'
            return 409, status(409, "AlreadyExists", message)
        self.policies[(ns, name)] = copy.deepcopy(r.body)
        return 201, copy.deepcopy(r.body)

    def _delete_policy(self, r: Request, ns: str, name: str) -> tuple[int, dict[str, Any]]:
        if self.policies.pop((ns, name), None) is None:
            return self._missing("networkpolicies.networking.k8s.io", name)
        return 200, status(200, "", "") | {"status": "Success"}

    def _list_policies(self, r: Request, ns: str) -> tuple[int, dict[str, Any]]:
        items = [
            p
            for (policy_ns, _), p in sorted(self.policies.items())
            if policy_ns == ns
            and _selected(p["metadata"].get("labels", {}), r.query.get("labelSelector"))
        ]
        return self._list("NetworkPolicyList", items)

    def _chaos(self, r: Request, ns: str, name: str | None = None) -> tuple[int, dict[str, Any]]:
        if not self.chaos_mesh:  # the CRD is not installed: the whole resource type is unknown
            return 404, status(404, "NotFound", "the server could not find the requested resource")
        if r.method == "GET":
            items = [c for (c_ns, _), c in sorted(self.chaos.items()) if c_ns == ns]
            return 200, {
                "apiVersion": "chaos-mesh.org/v1alpha1",
                "kind": "NetworkChaosList",
                "metadata": {},
                "items": copy.deepcopy(items),
            }
        if r.method == "POST":
            name = r.body["metadata"]["name"]
            if (ns, name) in self.chaos:
                return 409, status(409, "AlreadyExists", f'networkchaos "{name}" already exists')
            self.chaos[(ns, str(name))] = copy.deepcopy(r.body)
            return 201, copy.deepcopy(r.body)
        if self.chaos.pop((ns, str(name)), None) is None:
            return self._missing("networkchaos.chaos-mesh.org", str(name))
        return 200, status(200, "", "") | {"status": "Success"}


class _Handler(BaseHTTPRequestHandler):
    def _serve(self) -> None:
        api: FakeKubeAPI = self.api
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        auth = self.headers.get("Authorization") or ""
        request = Request(
            method=self.command,
            path=path,
            query={k: v[-1] for k, v in parse_qs(query).items()},
            body=json.loads(raw) if raw else None,
            content_type=self.headers.get("Content-Type"),
            token=auth.removeprefix("Bearer ") if auth else None,
        )
        code, payload = api.handle(request)
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


def serve(api: FakeKubeAPI) -> tuple[ThreadingHTTPServer, str]:
    """Serve `api` on 127.0.0.1, a free port; return the server and its base URL."""
    return serve_handler(type("Handler", (_Handler,), {"api": api}))


def write_kubeconfig(path: Path, contexts: dict[str, str], current: str) -> Path:
    """A kubeconfig whose contexts (name -> server URL) each use the bearer token `<name>-token`.

    The token lets a test tell from the record which context a request was made with.
    """
    lines = ["apiVersion: v1", "kind: Config", f"current-context: {current}", "clusters:"]
    lines += [f"- name: {n}\n  cluster:\n    server: {url}" for n, url in contexts.items()]
    lines.append("users:")
    lines += [f"- name: {n}\n  user:\n    token: {n}-token" for n in contexts]
    lines.append("contexts:")
    lines += [f"- name: {n}\n  context:\n    cluster: {n}\n    user: {n}" for n in contexts]
    path.write_text("\n".join(lines) + "\n")
    return path


def isolate_client(monkeypatch: pytest.MonkeyPatch, kubeconfig: Path | str) -> None:
    """Point the kubernetes client and chaosk8s at `kubeconfig`, and undo their global changes.

    chaosk8s reads `KUBECONFIG` when called, the kubernetes client once at import
    (`KUBE_CONFIG_DEFAULT_LOCATION`): both are set. `load_kube_config` replaces the client's
    default Configuration, and chaosk8s assigns `verify_ssl` / `debug` on the class itself:
    monkeypatch restores all three after the test.
    """
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    for name in (
        "KUBERNETES_CONTEXT",
        "KUBERNETES_HOST",
        "CHAOSTOOLKIT_IN_POD",
        "HTTP_PROXY",
        "NO_PROXY",
        "http_proxy",
        "no_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(k8s.Configuration, "_default", None)
    monkeypatch.setattr(k8s.Configuration, "verify_ssl", False, raising=False)
    monkeypatch.setattr(k8s.Configuration, "debug", k8s.Configuration.__dict__["debug"])
