"""Pod probes: how many replicas are ready, whether killed pods were really replaced, and
whether a fault elsewhere restarted pods it should not have touched."""

from __future__ import annotations

from typing import Any

from chaoslib.types import Configuration, Secrets

from chaoshelius import windows
from chaoshelius.drivers import driver_for
from chaoshelius.slo.verdict import Judged, gated, verdict, window_probe
from chaoshelius.topology import FaultKind

__all__ = ["pods_ready", "pods_replaced", "pods_survived"]


def pods_ready(
    app: str,
    min_ready: int,
    zone: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """`ok` when `app` has at least `min_ready` ready pods (in `zone`, if given), now.
    Before any fault it raises instead of returning `ok: false` (a broken start fails the run).
    After the method it also fails when an await for `app`'s pods timed out in this run
    (`await_pods_ready` records it): pods that came back only after their await gave up were
    not back when the experiment said they must be, and Chaos Toolkit alone would only have
    logged the failed action."""
    _, driver = driver_for(configuration)
    pods = driver.list_pods(app, zone)
    ready = [p.name for p in pods if p.ready]
    where = f" in {zone}" if zone else ""
    timeouts = windows.await_timeouts(app)
    return gated(
        verdict(
            len(ready) >= min_ready and not timeouts,
            len(ready),
            {"min_ready": min_ready},
            f"{app}{where}: {len(ready)} ready pod(s) of {len(pods)}, need {min_ready}"
            + (f"; an await timed out in this run: {timeouts[0]}" if timeouts else ""),
            pods=[
                {"name": p.name, "zone": p.zone, "ready": p.ready, "restarts": p.restarts}
                for p in pods
            ],
        )
    )


@window_probe(kind=FaultKind.POD_KILL.value, target_from="app")
def pods_replaced(
    judged: Judged,
    app: str,
    min_ready: int | None = None,
    window_id: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Proof the kill happened and healed: the pods killed in this run's `pod-kill` window are
    gone and `app` has at least `min_ready` ready pods with new names (default: as many as
    were ready before the kill). A pod still terminating counts as not gone.
    Vacuous before the fault.
    """
    window = judged.window
    if min_ready is None:
        min_ready = windows.ready_before(window, app)
        judged.threshold["min_ready"] = min_ready
    killed = set(window.details.get("killed", []))
    pods = judged.driver.list_pods(app)
    survivors = sorted(killed & {p.name for p in pods})
    fresh = [p.name for p in pods if p.ready and p.name not in killed]
    ok = bool(killed) and not survivors and len(fresh) >= min_ready
    if not killed:
        why = "the window records no killed pod"
    elif survivors:
        why = f"killed pod(s) {survivors} are still listed: the kill did not take"
    else:
        why = f"{len(fresh)} ready replacement(s), need {min_ready}"
    return judged.result(
        ok, len(fresh), f"{app}: killed {sorted(killed)}; {why}", pods=[p.name for p in pods]
    )


@window_probe()
def pods_survived(
    judged: Judged,
    app: str,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """`ok` when every pod of `app` that was ready when the fault started is still there, was
    not restarted and is ready now: the fault (on a dependency) restarted none of them, e.g. no
    liveness probe tied to MLflow made the kubelet (or the local stack's supervisor) restart a
    recommender. Vacuous before the fault.

    Judged on names *and* restart counts: the local supervisor gives a restarted pod a new name,
    but the kubelet restarts a failing container in place (same pod, same name,
    `restartCount` + 1), so on a cluster a name comparison alone sees nothing. The fault action
    recorded each pod's count (`restarts_before`); a pod whose count grew since failed. A window
    recorded without counts is judged on names only."""
    before = windows.pods_before(judged.window, app)
    counts = windows.restarts_before(judged.window, app)
    pods = judged.driver.list_pods(app)
    ready_now = {p.name for p in pods if p.ready}
    gone = sorted(set(before) - {p.name for p in pods})
    restarted = sorted(
        f"{p.name} ({p.restarts - counts[p.name]}x)"
        for p in pods
        if p.name in before and p.name in counts and p.restarts > counts[p.name]
    )
    not_ready = sorted(set(before) - ready_now - set(gone))
    problems = []
    if not before:
        problems.append("the fault recorded no pod of this app at its start")
    if gone:
        problems.append(f"restarted or replaced since the fault started: {gone}")
    if restarted:
        problems.append(f"restarted in place since the fault started: {restarted}")
    if not_ready:
        problems.append(f"not ready now: {not_ready}")
    return judged.result(
        not problems,
        len(gone) + len(restarted),
        f"{app}: {len(before)} pod(s) at the fault's start; "
        + ("; ".join(problems) if problems else "all still there, not restarted and ready"),
        pods=sorted(p.name for p in pods),
        restarts={p.name: p.restarts for p in pods},
    )
