"""Zone probes: pods of an app in a zone, now."""

from __future__ import annotations

from typing import Any

from chaoslib.types import Configuration, Secrets

from chaoshelius.pods.probes import pods_ready
from chaoshelius.topology import ZONES

__all__ = ["every_zone_has_ready_pods"]


def every_zone_has_ready_pods(
    app: str, configuration: Configuration = None, secrets: Secrets = None
) -> dict[str, Any]:
    """`ok` when each zone runs at least one ready pod of `app` (the spread survived)."""
    per_zone = {zone: pods_ready(app, 1, zone, configuration, secrets) for zone in ZONES}
    missing = [zone for zone, result in per_zone.items() if not result["ok"]]
    return {
        "ok": not missing,
        "value": len(ZONES) - len(missing),
        "threshold": {"zones": list(ZONES)},
        "query": "",
        "description": f"{app}: "
        + (f"no ready pod in {missing}" if missing else "a ready pod in every zone"),
        "window": None,
        "zones": {zone: result["value"] for zone, result in per_zone.items()},
    }
