"""Zone faults: drain every pod of an availability zone, and uncordon it."""

from __future__ import annotations

from typing import Any

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from chaoshelius import windows
from chaoshelius.drivers import driver_for, fleet_snapshot
from chaoshelius.topology import ZONES, FaultKind

__all__ = ["drain_zone", "uncordon_zone"]

KIND_DRAIN = FaultKind.DRAIN.value


def drain_zone(
    zone: str,
    ttl_seconds: float = 90.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Drain `zone` (its pods stop and stay down) until `uncordon_zone` or the TTL.

    On kubernetes: cordon + evict the nodes labelled `topology.kubernetes.io/zone=<zone>`.
    Opens a `drain` window on the zone.
    """
    windows.mark_fault_phase()
    if zone not in ZONES:
        raise ActivityFailed(f"unknown zone {zone!r}; use one of {list(ZONES)}")
    config, driver = driver_for(configuration)
    before = fleet_snapshot(driver)
    fault = driver.drain_zone(zone, ttl_seconds)
    # the window starts when the drain did: the kubernetes driver returns only once the
    # evicted pods are gone, and "up just before the fault" must see them still up
    window = windows.open_window(
        config.helius_run_dir,
        KIND_DRAIN,
        zone,
        window_id=fault.id,
        details={"expires_at": fault.expires_at, **before, **fault.details},
        started_at=fault.started_at,
    )
    return {"fault": fault.id, "expires_at": fault.expires_at, "window": window.as_output()}


def uncordon_zone(
    zone: str, configuration: Configuration = None, secrets: Secrets = None
) -> dict[str, Any]:
    """Let `zone` run pods again (safe to run twice)."""
    config, driver = driver_for(configuration)
    undone = driver.uncordon_zone(zone)
    closed = windows.close_windows(config.helius_run_dir, kind=KIND_DRAIN, target=zone)
    return {"undone": undone, "window": closed[0].as_close_output() if closed else None}
