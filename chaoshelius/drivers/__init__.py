"""Target drivers: `get_driver(config)` dispatches on the configuration key `target`."""

from __future__ import annotations

from chaoshelius.config import HarnessConfig
from chaoshelius.drivers.base import (
    PATH_MODES,
    Driver,
    FaultRef,
    LoadGenerator,
    PathMode,
    PodInfo,
)

__all__ = [
    "PATH_MODES",
    "Driver",
    "FaultRef",
    "LoadGenerator",
    "PathMode",
    "PodInfo",
    "driver_for",
    "get_driver",
]


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
