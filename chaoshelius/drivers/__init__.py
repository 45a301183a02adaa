"""Target drivers: `get_driver(config)` dispatches on the configuration key `target`."""

from __future__ import annotations

from typing import Any

from chaoshelius.config import HarnessConfig
from chaoshelius.drivers.base import Driver, FaultRef, LoadGenerator, PodInfo
from chaoshelius.topology import App, PathMode

__all__ = [
    "Driver",
    "FaultRef",
    "LoadGenerator",
    "PathMode",
    "PodInfo",
    "driver_for",
    "fleet_snapshot",
    "get_driver",
]

FLEET_APPS = (App.RECO.value, App.MLFLOW.value)


def get_driver(config: HarnessConfig) -> Driver:
    """The driver for `config.target` (`local`: control API; `kubernetes`: allow-listed cluster)."""
    if config.target == "kubernetes":
        from chaoshelius.drivers.kubernetes import KubernetesDriver

        return KubernetesDriver(config)
    from chaoshelius.drivers.local import LocalDriver

    return LocalDriver(config)


def driver_for(configuration: dict[str, object] | None) -> tuple[HarnessConfig, Driver]:
    """Configuration and driver for an activity (one call at the top of each activity)."""
    config = HarnessConfig.from_chaos(configuration)
    return config, get_driver(config)


def fleet_snapshot(driver: Driver, apps: tuple[str, ...] = FLEET_APPS) -> dict[str, Any]:
    """What every fault action records in its window when it starts: per app, how many pods
    were ready, their names and how many per zone (`ready_before`, `pods_before`,
    `zones_before`), and each ready pod's restart count (`restarts_before`: a liveness restart
    on a cluster keeps the pod's name and only raises this count). Probes compare with these to
    prove a fault bit (pods gone) or did not spill over (no pod replaced or restarted); awaits
    to know when every zone is back."""
    pods = {app: driver.list_pods(app) for app in apps}
    ready = {app: sorted(p.name for p in found if p.ready) for app, found in pods.items()}
    restarts = {app: {p.name: p.restarts for p in found if p.ready} for app, found in pods.items()}
    zones: dict[str, dict[str, int]] = {}
    for app, found in pods.items():
        for p in found:
            if p.ready:
                per_app = zones.setdefault(app, {})
                per_app[p.zone or "?"] = per_app.get(p.zone or "?", 0) + 1
    return {
        "ready_before": {app: len(names) for app, names in ready.items()},
        "pods_before": ready,
        "zones_before": zones,
        "restarts_before": restarts,
    }
