"""The kubernetes driver's common ground: the client, the one error boundary, pods and zones.

Every operation runs inside `K8sCore._calling`, which converts what the client and chaosk8s
raise (ApiException, chaosk8s's ActivityFailed, kubeconfig and connection errors) into a
one-line TargetError naming the operation, the context, the API's status and message, and what
to do about it. The fault families (k8s_network, k8s_zones, k8s_load, kubernetes) build on it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from chaoslib.exceptions import ActivityFailed
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError

from chaoshelius.config import HarnessConfig
from chaoshelius.drivers.base import PodInfo
from chaoshelius.drivers.k8s_context import resolve_context
from chaoshelius.drivers.k8s_names import expires_at_value
from chaoshelius.exceptions import HeliusError, TargetError
from chaoshelius.topology import APP_LABEL, ZONE_LABEL

__all__ = ["K8sCore", "api_message", "expiry", "one_line"]


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def api_message(exc: ApiException) -> str:
    """The API server's own message (from its Status body), else the HTTP reason."""
    try:
        message = json.loads(exc.body or "")["message"]
    except (ValueError, TypeError, KeyError):
        message = None
    return one_line(message or exc.reason or "no message")


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


def _restarts(pod: Any) -> int:
    """How often the pod's containers were restarted in place (the kubelet keeps the pod and its
    name on a liveness or OOM restart and counts it in `containerStatuses[].restartCount`);
    init containers are not counted (they run before the pod serves)."""
    statuses = (pod.status.container_statuses or []) if pod.status else []
    return sum(int(s.restart_count or 0) for s in statuses)


def expiry(now: float, seconds: float, what: str) -> str:
    """The `expires-at` of a fault that lasts `seconds` from `now` (one writer for every
    fault: k8s_names.expires_at_value), or TargetError before anything is sent."""
    try:
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"{what} must be a finite number of seconds >= 0, not {seconds!r}")
        return expires_at_value(now + seconds)
    except (TypeError, ValueError) as exc:
        raise TargetError(f"{one_line(exc)}; the reaper reverts the fault at that time") from None


class K8sCore:
    """The client, the error boundary and the reads every fault family needs."""

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
            raise TargetError(f"cannot {what} {where}: {one_line(exc)}") from exc
        except ConfigException as exc:
            raise TargetError(
                f"cannot load kube context {self._context!r} to {what}: {one_line(exc)}; "
                "check its credentials in the kubeconfig"
            ) from exc
        except HTTPError as exc:
            raise TargetError(
                f"cannot reach the Kubernetes API of context {self._context!r} to {what} "
                f"({one_line(exc)}); check that the cluster is up and the kubeconfig's server "
                "address"
            ) from exc

    def _api_error(self, what: str, where: str, exc: ApiException) -> TargetError:
        return TargetError(
            f"cannot {what} {where}: the Kubernetes API answered {exc.status} "
            f"{one_line(exc.reason)} ({api_message(exc)}); {_api_hint(exc.status, self._context)}"
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
