"""The cluster's dead-man's switch: revert every harness fault past its `expires-at`.

    python -m chaoshelius.drivers.k8s_reaper --namespace helius [--interval 5] [--once]
        [--kubeconfig PATH --context NAME]      # default: the in-cluster ServiceAccount

The kubernetes driver writes `helius.chaos/expires-at` (Unix seconds) on every fault it makes;
this loop, running in the cluster as the Deployment `helius-chaos-reaper`
(manifests/components/chaos-harness/chaos-harness.yaml), undoes what has expired, whether or
not the runner that made it is still alive (a `chaos run` killed with SIGKILL, a laptop gone
to sleep):

- NetworkPolicies labelled `helius.chaos/fault=true` in the namespace: deleted;
- Deployments annotated `helius.chaos/original-replicas`: scaled back, annotations removed;
- nodes annotated `helius.chaos/cordoned` (only cordons the harness made): uncordoned;
- Chaos Mesh NetworkChaos labelled as a fault: deleted (Chaos Mesh also ends them itself at
  their `duration`; no Chaos Mesh installed is not an error).

A fault whose `expires-at` is malformed (missing, not a number, `nan`, `inf`, zero or
negative) is reverted at once and reported (`"event": "malformed"`, one JSON line). The
harness only writes finite, positive expiries (k8s_names.expires_at_value), so such a value is
damage or a foreign writer; reading `nan` or `inf` as "never" would leave the fault in place
for good, and a forgotten cordon, a Deployment at 0 or a cut path is the failure this exists to
prevent, while reverting early costs at most the experiment that was running. A Deployment
whose `original-replicas` is not a whole number cannot be reverted (to how many?): it is
skipped and reported, and the pass goes on with the other objects. Each revert is one JSON line
on stdout; an API error on one object, or on one kind of object, is logged and the pass goes
on; only when no kind could be listed (the API is down) is the pass an error. A report about
the same object and value is printed once per process, not every pass. `--heartbeat FILE` is
touched after each pass (the Deployment's probes check its age).
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
    parse_expires_at,
    parse_replicas,
)
from chaoshelius.topology import NAMESPACE

__all__ = ["client_for", "main", "reap"]

Log = Callable[[dict[str, Any]], None]


def _print(event: dict[str, Any]) -> None:
    print(json.dumps(event, sort_keys=True), flush=True)


class _Pass:
    """One pass of the reaper: what it reverted, what it reported, what failed."""

    def __init__(self, now: float, log: Log, reported: set[tuple[str, str, str]]):
        self.now = now
        self.log = log
        self.reported = reported
        self.reverted: list[str] = []

    def report(self, what: str, annotation: str, value: object, action: str) -> None:
        """A malformed annotation: logged once per (object, annotation, value) per process."""
        key = (what, annotation, repr(value))
        if key in self.reported:
            return
        self.reported.add(key)
        self.log(
            {
                "event": "malformed",
                "object": what,
                "annotation": annotation,
                "value": value,
                "action": action,
            }
        )

    def expired(self, what: str, annotations: dict[str, str] | None) -> bool:
        """Past its expiry; a malformed expiry counts as past (reported)."""
        value = (annotations or {}).get(ANNOT_EXPIRES)
        at = parse_expires_at(value)
        if at is None:
            self.report(what, ANNOT_EXPIRES, value, "reverted")
            return True
        return at <= self.now

    def attempt(self, what: str, action: Callable[[], object]) -> None:
        try:
            action()
        except ApiException as exc:
            if exc.status == 404:  # undone meanwhile (the runner's rollback): nothing to do
                return
            self.log({"event": "error", "object": what, "status": exc.status, "reason": exc.reason})
            return
        self.reverted.append(what)
        self.log({"event": "reverted", "object": what, "at": round(self.now, 3)})

    def each(self, kind: str, items: list[Any], handle: Callable[[Any], None]) -> None:
        """`handle` every item; whatever one item raises is logged and the others go on."""
        for item in items:
            try:
                handle(item)
            except Exception as exc:  # noqa: BLE001  one bad object must not stop the switch
                self.log({"event": "error", "object": kind, "error": _one_line(exc)})


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: " + " ".join(str(exc).split())


class _Sweep(_Pass):
    """A pass over one namespace's fault objects: how each kind is listed and reverted."""

    def __init__(
        self,
        api: k8s.ApiClient,
        namespace: str,
        now: float,
        log: Log,
        reported: set[tuple[str, str, str]],
    ):
        super().__init__(now, log, reported)
        self.namespace = namespace
        self.core, self.apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
        self.net, self.custom = k8s.NetworkingV1Api(api), k8s.CustomObjectsApi(api)
        self.fault = f"{FAULT_LABEL}=true"

    def kinds(self) -> list[tuple[str, Callable[[], list[Any]], Callable[[Any], None]]]:
        """(kind, list its objects, handle one object), in the order a pass sweeps them."""
        ns = self.namespace
        return [
            (
                "networkpolicies",
                lambda: (
                    self.net.list_namespaced_network_policy(ns, label_selector=self.fault).items
                ),
                self.policy,
            ),
            (
                "deployments",
                lambda: self.apps.list_namespaced_deployment(ns).items,
                self.deployment,
            ),
            ("nodes", lambda: self.core.list_node().items, self.node),
            ("networkchaos", self.list_chaos, self.network_chaos),
        ]

    def policy(self, item: Any) -> None:
        name = item.metadata.name
        what = f"networkpolicy/{name}"
        if self.expired(what, item.metadata.annotations):
            delete = self.net.delete_namespaced_network_policy
            self.attempt(what, partial(delete, name, self.namespace))

    def deployment(self, item: Any) -> None:
        annotations = item.metadata.annotations or {}
        if ANNOT_ORIGINAL not in annotations:
            return
        name = item.metadata.name
        what = f"deployment/{name}"
        replicas = parse_replicas(annotations[ANNOT_ORIGINAL])
        if replicas is None:  # restore to how many? left as it is, for a person to decide
            self.report(what, ANNOT_ORIGINAL, annotations[ANNOT_ORIGINAL], "skipped")
            return
        if self.expired(what, annotations):
            body = {
                "metadata": {"annotations": {ANNOT_ORIGINAL: None, ANNOT_EXPIRES: None}},
                "spec": {"replicas": replicas},
            }
            patch = self.apps.patch_namespaced_deployment
            self.attempt(what, partial(patch, name, self.namespace, body))

    def node(self, item: Any) -> None:
        annotations = item.metadata.annotations or {}
        what = f"node/{item.metadata.name}"
        if ANNOT_CORDONED in annotations and self.expired(what, annotations):
            self.attempt(what, partial(self.core.patch_node, item.metadata.name, UNCORDON_PATCH))

    def network_chaos(self, item: Any) -> None:
        meta = item.get("metadata", {})
        name = meta["name"]
        what = f"networkchaos/{name}"
        if self.expired(what, meta.get("annotations")):
            self.attempt(
                what,
                partial(
                    self.custom.delete_namespaced_custom_object,
                    "chaos-mesh.org",
                    "v1alpha1",
                    self.namespace,
                    "networkchaos",
                    name,
                ),
            )

    def list_chaos(self) -> list[Any]:
        try:
            found: Any = self.custom.list_namespaced_custom_object(
                "chaos-mesh.org",
                "v1alpha1",
                self.namespace,
                "networkchaos",
                label_selector=self.fault,
            )
        except ApiException as exc:
            if exc.status != 404:  # 404: Chaos Mesh is not installed
                raise
            return []
        items: list[Any] = found.get("items", [])
        return items


def reap(
    api: k8s.ApiClient,
    namespace: str,
    now: float,
    log: Log = _print,
    reported: set[tuple[str, str, str]] | None = None,
) -> list[str]:
    """One pass: revert what expired at `now`; return what was reverted (`kind/name`).

    `reported`: the malformed annotations already reported (kept across passes by `main`).
    Raises only when no kind of object could be listed (the API is down)."""
    run = _Sweep(api, namespace, now, log, set() if reported is None else reported)
    kinds = run.kinds()
    failures: list[Exception] = []
    for kind, listing, handle in kinds:
        try:
            items = listing()
        except (ApiException, HTTPError) as exc:
            failures.append(exc)
            log({"event": "error", "object": kind, "error": _one_line(exc)})
            continue
        run.each(kind, items, handle)
    if len(failures) == len(kinds):
        raise failures[0]
    return run.reverted


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
    parser.add_argument("--namespace", default=os.environ.get("HELIUS_NAMESPACE", NAMESPACE))
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("--context", default=None)
    parser.add_argument("--heartbeat", type=Path, default=None)
    args = parser.parse_args(argv)
    api = client_for(args.kubeconfig, args.context)
    _print({"event": "start", "namespace": args.namespace, "interval": args.interval})
    reported: set[tuple[str, str, str]] = set()
    while True:
        try:
            reap(api, args.namespace, time.time(), reported=reported)
        except Exception as exc:  # noqa: BLE001  the API is down (or worse): next pass
            _print({"event": "error", "object": "pass", "error": _one_line(exc)})
        else:
            _print({"event": "pass", "at": round(time.time(), 3)})
            if args.heartbeat is not None:
                args.heartbeat.touch()
        if args.once:
            return 0
        time.sleep(args.interval)


if __name__ == "__main__":
    raise SystemExit(main())
