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

The module is the driver's front: the allow-list and pin are in k8s_context, the error boundary
and pod reads in k8s_core, paths in k8s_network, zones in k8s_zones, the load generator in
k8s_load; pod kills and scale are here.

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

No cluster can run on the machines this was written on: tests/drivers/test_kubernetes_*.py
check it against a fake API server (tests/support/k8s_fake_api.py, serving the rendered kind
overlay, with graceful deletion, PDB-enforcing eviction and replacing controllers) through the
real client and chaosk8s, nothing more.
"""

from __future__ import annotations

import time
from typing import Any

from chaosk8s.deployment.actions import scale_deployment
from chaosk8s.pod.actions import terminate_pods
from kubernetes import client as k8s

from chaoshelius.drivers.base import FaultRef, check_grace_period
from chaoshelius.drivers.k8s_context import ca_fingerprint, resolve_context
from chaoshelius.drivers.k8s_core import expiry
from chaoshelius.drivers.k8s_load import LOADGEN_MASTER, LOADGEN_WORKER, LoadgenDeployments
from chaoshelius.drivers.k8s_names import (
    ANNOT_CORDONED,
    ANNOT_EXPIRES,
    ANNOT_ORIGINAL,
    FAULT_LABEL,
    HARNESS_LABEL,
    parse_replicas,
)
from chaoshelius.drivers.k8s_network import PathFaults, network_chaos_for, network_policy_for
from chaoshelius.drivers.k8s_zones import ZoneFaults
from chaoshelius.exceptions import TargetError
from chaoshelius.topology import APP_LABEL, FaultKind

__all__ = [
    "ANNOT_CORDONED",
    "ANNOT_EXPIRES",
    "ANNOT_ORIGINAL",
    "FAULT_LABEL",
    "HARNESS_LABEL",
    "LOADGEN_MASTER",
    "LOADGEN_WORKER",
    "KubernetesDriver",
    "ca_fingerprint",
    "network_chaos_for",
    "network_policy_for",
    "resolve_context",
]


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


class KubernetesDriver(PathFaults, ZoneFaults, LoadgenDeployments):
    """Faults on an allow-listed cluster namespace through chaosk8s: pods and scale here, paths
    (k8s_network), zones (k8s_zones) and the load generator (k8s_load) from their modules."""

    name = "kubernetes"

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
        expires = expiry(now, ttl_seconds, "ttl_seconds")
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
            kind=FaultKind.SCALE.value,
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
