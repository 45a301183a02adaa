"""Zone faults: drain every pod of an availability zone, and uncordon it.

Zone names are the target's: on kubernetes the values of the nodes' `topology.kubernetes.io/zone`
label (`eu-west-1a` on EKS, `zone-a` on the kind overlay), on the local stack its own
(`zone-a|b|c`). The experiments take theirs from the configuration key `helius_zone`
(HELIUS_ZONE, default `zone-a`). A zone is checked here only for being a label value; whether
the target has it is the driver's answer (kubernetes: no node labelled so; local: the stack's
404), one line either way.
"""

from __future__ import annotations

import os
import re
from typing import Any

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from chaoshelius.faults import inject_fault, undo_fault
from chaoshelius.topology import ZONE_LABEL, FaultKind

__all__ = ["drain_zone", "uncordon_zone"]

# az-drain's zone variable before helius_zone: refused with what to write instead
OLD_ZONE_ENV = "HELIUS_DRAIN_ZONE"
# a Kubernetes label value (k8s.io/apimachinery validation.IsValidLabelValue), not empty
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


def _check_zone(zone: object) -> str:
    """`zone` if it can be a `topology.kubernetes.io/zone` label value, else ActivityFailed."""
    if not isinstance(zone, str) or not _LABEL_VALUE.fullmatch(zone):
        raise ActivityFailed(
            f"zone {zone!r} cannot be a {ZONE_LABEL} label value (1-63 letters, digits, '-', "
            "'_' or '.', starting and ending with a letter or digit); set helius_zone "
            "(HELIUS_ZONE) to a zone of the target, e.g. eu-west-1a or zone-a"
        )
    return zone


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
    _check_zone(zone)
    old = os.environ.get(OLD_ZONE_ENV)
    if old and old != zone:
        raise ActivityFailed(
            f"{OLD_ZONE_ENV}={old} is no longer read (the zone here is {zone!r}); set "
            f"HELIUS_ZONE={old} instead (or --var helius_zone={old}): one key for every "
            "zone-pinned experiment"
        )
    # the window starts when the drain did: the kubernetes driver returns only once the
    # evicted pods are gone, and "up just before the fault" must see them still up
    return inject_fault(
        configuration,
        FaultKind.DRAIN,
        zone,
        lambda driver: driver.drain_zone(zone, ttl_seconds),
        lambda fault, before: {"expires_at": fault.expires_at, **before, **fault.details},
        start_at_fault=True,
    )


def uncordon_zone(
    zone: str, configuration: Configuration = None, secrets: Secrets = None
) -> dict[str, Any]:
    """Let `zone` run pods again (safe to run twice)."""
    _check_zone(zone)
    return undo_fault(configuration, FaultKind.DRAIN, zone, lambda d: d.uncordon_zone(zone))
