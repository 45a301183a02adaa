"""Path faults on a cluster: a NetworkPolicy (blackhole/reset) or a Chaos Mesh NetworkChaos
(latency) on one dependency edge, and their undo.

blackhole/reset -> a NetworkPolicy `helius-chaos-<edge>` that leaves the source pods every
egress except the edge's destination; latency -> a Chaos Mesh NetworkChaos with a `duration`
(Chaos Mesh ends it by itself). A NetworkPolicy only removes what no other policy allows: the
manifests' policies must not grant MLflow -> RDS separately (see manifests/).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from typing import Any

from chaosk8s.networking.actions import create_network_policy, remove_network_policy
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from chaoshelius.drivers.base import FaultRef
from chaoshelius.drivers.k8s_core import K8sCore, expiry
from chaoshelius.drivers.k8s_names import ANNOT_EXPIRES, FAULT_LABEL
from chaoshelius.exceptions import TargetError
from chaoshelius.topology import (
    APP_LABEL,
    EDGE_MLFLOW_RDS,
    EDGE_RECO_MLFLOW,
    App,
    FaultKind,
    PathMode,
)

__all__ = ["PathFaults", "network_chaos_for", "network_policy_for"]

# edge -> (source app, destination app)
_EDGES: dict[str, tuple[str, str]] = {
    EDGE_MLFLOW_RDS: (App.MLFLOW.value, App.POSTGRES.value),
    EDGE_RECO_MLFLOW: (App.RECO.value, App.MLFLOW.value),
}


def _edge(edge: str) -> tuple[str, str]:
    try:
        return _EDGES[edge]
    except KeyError:
        raise TargetError(f"unknown edge {edge!r}; known edges: {sorted(_EDGES)}") from None


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


class PathFaults(K8sCore):
    """cut_path / restore_path / active_faults of the kubernetes driver."""

    def cut_path(
        self, edge: str, mode: PathMode, latency_ms: int | None, ttl_seconds: float
    ) -> FaultRef:
        source, destination = _edge(edge)
        now = time.time()
        expires = expiry(now, ttl_seconds, "ttl_seconds")
        if mode == PathMode.LATENCY:
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
            kind=FaultKind.PATH.value,
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

    def active_faults(self) -> list[FaultRef]:
        with self._calling("list the chaos NetworkPolicies"):
            net = k8s.NetworkingV1Api(self._api())
            policies: list[Any] = net.list_namespaced_network_policy(
                self._ns, label_selector=f"{FAULT_LABEL}=true"
            ).items
        return [
            FaultRef(
                id=p.metadata.name,
                kind=FaultKind.PATH.value,
                target=(p.metadata.labels or {}).get("helius.chaos/edge", ""),
            )
            for p in policies
        ]
