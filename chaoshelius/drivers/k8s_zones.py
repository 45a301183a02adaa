"""Zone drains on a cluster, and their undo.

Not chaosk8s's `drain_nodes` (it skips pods with emptyDir volumes, i.e. all of ours, evicts
every namespace, and its undo uncordons nodes it never cordoned). The driver cordons the zone's
nodes, recording each cordon it made on the node (`helius.chaos/cordoned`), and evicts the
namespace's pods there through the eviction API (PDBs respected: a 429 is retried until the
TTL), sparing DaemonSet, static and harness pods (`helius.chaos/harness=true`: load generator,
reaper); `kube_drain_all_namespaces` widens it to every namespace. The undo uncordons only the
nodes carrying that annotation.
"""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from chaoshelius.drivers.base import FaultRef
from chaoshelius.drivers.k8s_core import K8sCore, api_message, expiry
from chaoshelius.drivers.k8s_names import (
    ANNOT_CORDONED,
    ANNOT_EXPIRES,
    HARNESS_LABEL,
    UNCORDON_PATCH,
)
from chaoshelius.exceptions import TargetError
from chaoshelius.topology import ZONE_LABEL, FaultKind

__all__ = ["ZoneFaults"]

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # what `kubectl rollout restart` sets
EVICTION_RETRY_SECONDS = 0.5


class ZoneFaults(K8sCore):
    """drain_zone / uncordon_zone of the kubernetes driver."""

    # ---------------------------------------------------------------- zones
    def drain_zone(self, zone: str, ttl_seconds: float) -> FaultRef:
        """Cordon the zone's nodes, then evict the namespace's pods there (PDBs respected).

        Only nodes this call made unschedulable are recorded (annotation ANNOT_CORDONED on the
        node, with ANNOT_EXPIRES): a node an operator had cordoned stays theirs. Evictions that
        a PDB refuses (429) are retried until they pass or `ttl_seconds` runs out; the call
        returns once every evicted pod is gone, so the zone is really empty of the system.
        """
        now = time.time()
        expires = expiry(now, ttl_seconds, "ttl_seconds")
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
            kind=FaultKind.DRAIN.value,
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
                            refused[key] = api_message(exc)
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
