"""Zone probes: pods of an app in a zone, now."""

from __future__ import annotations

from typing import Any

from chaoslib.types import Configuration, Secrets

from chaoshelius.drivers import driver_for
from chaoshelius.slo.verdict import gated, verdict
from chaoshelius.topology import ZONES

__all__ = ["every_zone_has_ready_pods"]


def every_zone_has_ready_pods(
    app: str, configuration: Configuration = None, secrets: Secrets = None
) -> dict[str, Any]:
    """`ok` when each zone runs at least one ready pod of `app` (the spread survived).

    The zones are the target's: on kubernetes those of its nodes' `topology.kubernetes.io/zone`
    labels (the driver's `zones()`), on the local stack its own `zone-a|b|c`.
    """
    _, driver = driver_for(configuration)
    zones_of = getattr(driver, "zones", None)
    zones = tuple(zones_of()) if callable(zones_of) else ZONES
    pods = driver.list_pods(app)
    per_zone = {zone: sum(1 for p in pods if p.ready and p.zone == zone) for zone in zones}
    missing = [zone for zone, count in per_zone.items() if not count]
    return gated(
        verdict(
            not missing,
            len(zones) - len(missing),
            {"zones": list(zones)},
            f"{app}: " + (f"no ready pod in {missing}" if missing else "a ready pod in every zone"),
            zones=per_zone,
        )
    )
