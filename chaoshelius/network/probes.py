"""Network probes: which faults a dependency edge carries right now."""

from __future__ import annotations

from typing import Any

from chaoslib.types import Configuration, Secrets

from chaoshelius.drivers import driver_for
from chaoshelius.network.actions import KIND_PATH
from chaoshelius.slo.verdict import verdict

__all__ = ["path_is_clear"]


def path_is_clear(
    edge: str, configuration: Configuration = None, secrets: Secrets = None
) -> dict[str, Any]:
    """`ok` when the target holds no fault on `edge` (nothing left behind by a run)."""
    _, driver = driver_for(configuration)
    faults = [f.id for f in driver.active_faults() if f.kind == KIND_PATH and f.target == edge]
    return verdict(
        not faults,
        len(faults),
        0,
        f"edge {edge}: " + (f"faults still active {faults}" if faults else "no active fault"),
        faults=faults,
    )
