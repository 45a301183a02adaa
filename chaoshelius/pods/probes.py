"""Pod probes: how many replicas are ready, and whether killed pods were really replaced."""

from __future__ import annotations

from typing import Any

from chaoslib.types import Configuration, Secrets

from chaoshelius.drivers import driver_for
from chaoshelius.pods.actions import KIND_KILL, ready_before
from chaoshelius.slo.verdict import gated, verdict, window_json, window_or_verdict

__all__ = ["pods_ready", "pods_replaced"]


def pods_ready(
    app: str,
    min_ready: int,
    zone: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """`ok` when `app` has at least `min_ready` ready pods (in `zone`, if given), now.
    Before any fault it raises instead of returning `ok: false` (a broken start fails the run)."""
    _, driver = driver_for(configuration)
    pods = driver.list_pods(app, zone)
    ready = [p.name for p in pods if p.ready]
    where = f" in {zone}" if zone else ""
    return gated(
        verdict(
            len(ready) >= min_ready,
            len(ready),
            {"min_ready": min_ready},
            f"{app}{where}: {len(ready)} ready pod(s) of {len(pods)}, need {min_ready}",
            pods=[{"name": p.name, "zone": p.zone, "ready": p.ready} for p in pods],
        )
    )


def pods_replaced(
    app: str,
    min_ready: int | None = None,
    window_id: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Proof the kill happened and healed: the pods killed in this run's `pod-kill` window are
    gone and `app` has at least `min_ready` ready pods with new names (default: as many as
    were ready before the kill). Vacuous before the fault.
    """
    window = window_or_verdict(window_id, KIND_KILL, app, {"min_ready": min_ready})
    if isinstance(window, dict):
        return window
    if min_ready is None:
        min_ready = ready_before(window, app)
    killed = set(window.details.get("killed", []))
    _, driver = driver_for(configuration)
    pods = driver.list_pods(app)
    survivors = sorted(killed & {p.name for p in pods})
    fresh = [p.name for p in pods if p.ready and p.name not in killed]
    ok = bool(killed) and not survivors and len(fresh) >= min_ready
    if not killed:
        why = "the window records no killed pod"
    elif survivors:
        why = f"killed pod(s) {survivors} are still listed: the kill did not take"
    else:
        why = f"{len(fresh)} ready replacement(s), need {min_ready}"
    return verdict(
        ok,
        len(fresh),
        {"min_ready": min_ready},
        f"{app}: killed {sorted(killed)}; {why}",
        window=window_json(window),
        pods=[p.name for p in pods],
    )
