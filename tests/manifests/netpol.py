"""A small NetworkPolicy evaluator (networking.k8s.io/v1 semantics), for offline tests.

Enough of the specification to judge the manifests' policies without a cluster:

- a pod is isolated for a direction when any policy of its namespace selects it with that
  direction in `policyTypes` (default: Ingress, plus Egress when the policy has `egress`);
- a connection is allowed when the source's egress AND the destination's ingress allow it
  (a non-isolated side allows everything); rules are a union, never a subtraction;
- a peer is a pod (`podSelector` / `namespaceSelector`, namespaces carry their
  `kubernetes.io/metadata.name` label) or an address outside the cluster (`ipBlock`, which
  here never matches a pod, as most CNIs do); empty `to`/`from`/`ports` match everything.

Named ports are not supported: the manifests use numbers, and a name raises.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from k8s_checks import selects

Obj = dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace + labels) or, with `namespace=None`, an address outside the cluster."""

    name: str
    namespace: str | None
    labels: Mapping[str, str] = field(default_factory=dict)
    ip: str | None = None

    @property
    def is_pod(self) -> bool:
        return self.namespace is not None


def pod(name: str, namespace: str, **labels: str) -> Endpoint:
    return Endpoint(name, namespace, dict(labels))


def external(name: str, ip: str) -> Endpoint:
    return Endpoint(name, None, {}, ip)


def _types(policy: Obj) -> list[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return list(spec["policyTypes"])
    return ["Ingress"] + (["Egress"] if "egress" in spec else [])


def _selecting(policies: Iterable[Obj], who: Endpoint, direction: str) -> list[Obj]:
    return [
        p
        for p in policies
        if p["metadata"].get("namespace") == who.namespace
        and direction in _types(p)
        and selects(p["spec"].get("podSelector") or {}, who.labels)
    ]


def _peer_matches(peer: Obj, other: Endpoint, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        if other.is_pod or other.ip is None:
            return False
        address = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        if address not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(address in ipaddress.ip_network(c) for c in block.get("except") or [])
    if not other.is_pod:
        return False
    ns_selector = peer.get("namespaceSelector")
    if ns_selector is None:
        if other.namespace != policy_namespace:
            return False
    elif not selects(ns_selector, {"kubernetes.io/metadata.name": str(other.namespace)}):
        return False
    pod_selector = peer.get("podSelector")
    return pod_selector is None or selects(pod_selector, other.labels)


def _port_matches(ports: list[Obj] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for entry in ports:
        number = entry.get("port")
        if isinstance(number, str):
            raise ValueError(f"named port {number!r}: not supported by this evaluator")
        if entry.get("protocol", "TCP") != protocol:
            continue
        if number is None:
            return True
        if number <= port <= entry.get("endPort", number):
            return True
    return False


def _side_allows(
    policies: Iterable[Obj], me: Endpoint, other: Endpoint, port: int, protocol: str, egress: bool
) -> bool:
    if not me.is_pod:
        return True  # outside the cluster: no NetworkPolicy applies there
    direction, rules_key, peers_key = (
        ("Egress", "egress", "to") if egress else ("Ingress", "ingress", "from")
    )
    selecting = _selecting(policies, me, direction)
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(rules_key) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(
                _peer_matches(p, other, policy["metadata"]["namespace"]) for p in peers
            )
            if peer_ok and _port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def allowed(
    policies: Iterable[Obj], src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP"
) -> bool:
    """Would a new connection src -> dst:port/protocol be allowed?"""
    policies = list(policies)
    return _side_allows(policies, src, dst, port, protocol, egress=True) and _side_allows(
        policies, dst, src, port, protocol, egress=False
    )
