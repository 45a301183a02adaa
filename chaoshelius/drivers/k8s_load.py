"""The in-cluster load generator (manifests/components/chaos-harness/loadgen.yaml): Locust's
master and workers scaled up for a bounded time, and back to 0."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client as k8s

from chaoshelius.drivers.k8s_core import K8sCore, expiry
from chaoshelius.drivers.k8s_names import ANNOT_EXPIRES, ANNOT_ORIGINAL
from chaoshelius.exceptions import TargetError
from chaoshelius.load.plan import LoadPlan
from chaoshelius.topology import APP_LABEL, App

__all__ = ["LOADGEN_MASTER", "LOADGEN_SETTINGS", "LOADGEN_WORKER", "LoadgenDeployments"]

# the in-cluster load generator (manifests/components/chaos-harness/loadgen.yaml)
LOADGEN_MASTER = "loadgen-master"
LOADGEN_WORKER = "loadgen-worker"
LOADGEN_SETTINGS = "loadgen-settings"


class LoadgenDeployments(K8sCore):
    """start_load / stop_load of the kubernetes driver (a `LoadGenerator`)."""

    startup_timeout_seconds = 120.0  # until the master and every worker are ready

    def start_load(self, plan: LoadPlan) -> dict[str, Any]:
        """Start the in-cluster Locust (manifests/components/chaos-harness/loadgen.yaml): the
        plan's Locust options (`plan.locust_env()`, its rate, pacing and churn) into the
        ConfigMap, master to 1 and workers to `plan.processes`, both annotated to go back to 0
        at `plan.duration_seconds` (stop_load, or the reaper if the runner is gone). Returns
        once the master and every worker are ready."""
        now = time.time()
        expires = now + plan.duration_seconds
        expires_at = expiry(now, plan.duration_seconds, "duration_seconds")
        settings = plan.locust_env()
        workers = plan.processes
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
        self._await_ready(workers + 1, self.startup_timeout_seconds)
        return {"workers": workers, "expires_at": expires, "settings": settings}

    def _await_ready(self, pods: int, timeout_seconds: float) -> None:
        """Wait until `pods` load generator pods are ready; else stop it and TargetError."""
        deadline = time.monotonic() + timeout_seconds
        while (ready := sum(p.ready for p in self.list_pods(App.LOADGEN.value))) < pods:
            if time.monotonic() >= deadline:
                self.stop_load()
                raise TargetError(
                    f"the load generator did not get ready within {timeout_seconds:.0f} s "
                    f"({ready} of {pods} pods ready), so it was stopped; see "
                    f"`kubectl -n {self._ns} describe pods -l {APP_LABEL}={App.LOADGEN.value}`"
                )
            time.sleep(1.0)

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
