"""The cluster's dead-man's switch: revert every harness fault past its `expires-at`.

    python -m chaoshelius.drivers.k8s_reaper --namespace helius [--interval 5] [--once]
        [--kubeconfig PATH --context NAME]      # default: the in-cluster ServiceAccount

The kubernetes driver writes `helius.chaos/expires-at` (Unix seconds) on every fault it makes;
this loop, running in the cluster as the Deployment `helius-chaos-reaper`
(manifests/base/chaos-harness.yaml), undoes what has expired, whether or not the runner that
made it is still alive (a `chaos run` killed with SIGKILL, a laptop gone to sleep):

- NetworkPolicies labelled `helius.chaos/fault=true` in the namespace: deleted;
- Deployments annotated `helius.chaos/original-replicas`: scaled back, annotations removed;
- nodes annotated `helius.chaos/cordoned` (only cordons the harness made): uncordoned;
- Chaos Mesh NetworkChaos labelled as a fault: deleted (Chaos Mesh also ends them itself at
  their `duration`; no Chaos Mesh installed is not an error).

A fault without a readable `expires-at` is reverted: the harness always writes one, so it is
damaged or foreign, and leaving a fault in place is the failure this exists to prevent.
Each revert is one JSON line on stdout; an API error on one object is logged and the loop goes
on. `--heartbeat FILE` is touched after each pass (the Deployment's probes check its age).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as kubeconfig
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from chaoshelius.drivers.k8s_names import (
    ANNOT_CORDONED,
    ANNOT_EXPIRES,
    ANNOT_ORIGINAL,
    FAULT_LABEL,
    UNCORDON_PATCH,
)

__all__ = ["client_for", "main", "reap"]

Log = Callable[[dict[str, Any]], None]


def _expired(annotations: dict[str, str] | None, now: float) -> bool:
    try:
        return float((annotations or {})[ANNOT_EXPIRES]) <= now
    except (KeyError, ValueError):
        return True


def _print(event: dict[str, Any]) -> None:
    print(json.dumps(event, sort_keys=True), flush=True)


def reap(api: k8s.ApiClient, namespace: str, now: float, log: Log = _print) -> list[str]:
    """One pass: revert what expired at `now`; return what was reverted (`kind/name`)."""
    reverted: list[str] = []

    def attempt(what: str, action: Callable[[], object]) -> None:
        try:
            action()
        except ApiException as exc:
            if exc.status == 404:  # undone meanwhile (the runner's rollback): nothing to do
                return
            log({"event": "error", "object": what, "status": exc.status, "reason": exc.reason})
            return
        reverted.append(what)
        log({"event": "reverted", "object": what, "at": round(now, 3)})

    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
    net, custom = k8s.NetworkingV1Api(api), k8s.CustomObjectsApi(api)
    fault = f"{FAULT_LABEL}=true"

    policies: list[Any] = net.list_namespaced_network_policy(namespace, label_selector=fault).items
    for policy in policies:
        if _expired(policy.metadata.annotations, now):
            name = policy.metadata.name
            attempt(
                f"networkpolicy/{name}",
                partial(net.delete_namespaced_network_policy, name, namespace),
            )

    deployments: list[Any] = apps.list_namespaced_deployment(namespace).items
    for deployment in deployments:
        annotations = deployment.metadata.annotations or {}
        if ANNOT_ORIGINAL in annotations and _expired(annotations, now):
            name = deployment.metadata.name
            body = {
                "metadata": {"annotations": {ANNOT_ORIGINAL: None, ANNOT_EXPIRES: None}},
                "spec": {"replicas": int(annotations[ANNOT_ORIGINAL])},
            }
            attempt(
                f"deployment/{name}",
                partial(apps.patch_namespaced_deployment, name, namespace, body),
            )

    nodes: list[Any] = core.list_node().items
    for node in nodes:
        annotations = node.metadata.annotations or {}
        if ANNOT_CORDONED in annotations and _expired(annotations, now):
            name = node.metadata.name
            attempt(f"node/{name}", partial(core.patch_node, name, UNCORDON_PATCH))

    try:
        chaos: Any = custom.list_namespaced_custom_object(
            "chaos-mesh.org", "v1alpha1", namespace, "networkchaos", label_selector=fault
        )
    except ApiException as exc:
        if exc.status != 404:  # 404: Chaos Mesh is not installed
            raise
        chaos = {"items": []}
    for item in chaos.get("items", []):
        meta = item.get("metadata", {})
        if _expired(meta.get("annotations"), now):
            attempt(
                f"networkchaos/{meta['name']}",
                partial(
                    custom.delete_namespaced_custom_object,
                    "chaos-mesh.org",
                    "v1alpha1",
                    namespace,
                    "networkchaos",
                    meta["name"],
                ),
            )
    return reverted


def client_for(kubeconfig_path: str | None, context: str | None) -> k8s.ApiClient:
    """In the cluster: the pod's ServiceAccount; else the kubeconfig's context."""
    if context is None and kubeconfig_path is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubeconfig.load_incluster_config()  # type: ignore[no-untyped-call]
        return k8s.ApiClient()
    configuration = k8s.Configuration()
    kubeconfig.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig_path, context=context, client_configuration=configuration
    )
    return k8s.ApiClient(configuration)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaoshelius.drivers.k8s_reaper")
    parser.add_argument("--namespace", default=os.environ.get("HELIUS_NAMESPACE", "helius"))
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("--context", default=None)
    parser.add_argument("--heartbeat", type=Path, default=None)
    args = parser.parse_args(argv)
    api = client_for(args.kubeconfig, args.context)
    _print({"event": "start", "namespace": args.namespace, "interval": args.interval})
    while True:
        try:
            reap(api, args.namespace, time.time())
        except (ApiException, HTTPError) as exc:  # the API is down: try again next pass
            _print({"event": "error", "object": "pass", "error": " ".join(str(exc).split())})
        else:
            _print({"event": "pass", "at": round(time.time(), 3)})
            if args.heartbeat is not None:
                args.heartbeat.touch()
        if args.once:
            return 0
        time.sleep(args.interval)


if __name__ == "__main__":
    raise SystemExit(main())
