"""Pod faults: kill replicas of an app, scale an app down (an outage), wait for replacement.

Each fault records its window (see chaoshelius.windows) for the after-method hypothesis.
"""

from __future__ import annotations

import time
from typing import Any

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from chaoshelius import windows
from chaoshelius.drivers import driver_for
from chaoshelius.drivers.base import check_grace_period
from chaoshelius.faults import begin_fault, close_fault_windows, inject_fault, undo_fault
from chaoshelius.topology import FaultKind
from chaoshelius.windows import ready_before

__all__ = ["await_pods_ready", "kill_pods", "restore_scale", "scale_app"]


def kill_pods(
    app: str,
    count: int | None = 1,
    zone: str | None = None,
    grace_period_seconds: int | None = 0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Kill `count` pods of `app` (all of them when `count` is null), optionally in one `zone`.

    A kill, not a shutdown: `grace_period_seconds` 0 (default) is SIGKILL locally and a delete
    with `gracePeriodSeconds: 0` on kubernetes (the pod object goes at once; the kubelet gives
    the containers its 2 s floor, not their `terminationGracePeriodSeconds`). On kubernetes,
    null deletes gracefully with the pod's own grace period, n > 0 with n seconds; the local
    stack only kills, and refuses those. Opens a `pod-kill` window that `await_pods_ready` closes
    once replacements are ready. Returns `{"killed": [names], "window": {...}}`.
    """
    check_grace_period(grace_period_seconds)
    start = begin_fault(configuration)
    killed = start.driver.kill_pods(
        app, count=count, zone=zone, grace_period_seconds=grace_period_seconds
    )
    if not killed:
        raise ActivityFailed(
            f"no pod of app {app!r}{f' in {zone}' if zone else ''} was killed: none matched; "
            "check the stack is up (`chaoshelius stack status`) and the app label"
        )
    window = start.open(
        FaultKind.POD_KILL, app, details={"killed": killed, "zone": zone, **start.before}
    )
    return {"killed": killed, "window": window.as_output()}


def await_pods_ready(
    app: str,
    replicas: int | None = None,
    timeout_seconds: float = 60.0,
    per_zone: bool = False,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Wait until `app` has `replicas` ready pods, none of them a pod killed in this run.

    `replicas` defaults to the ready count recorded when this run's last fault on `app`
    started (kill, scale or zone drain), else 1. With `per_zone`, every zone must also be
    back to the ready pods it had then (after a zone drain on a cluster the rolling restart
    re-spreads the pods some time after the count is back). Closes the app's open `pod-kill`
    window at that moment. Raises ActivityFailed after `timeout_seconds` and records the
    timeout (`windows.record_await_timeout`): Chaos Toolkit only logs a failed method action,
    so `pods_ready` and `replicas_recovered_within` on `app` read the record and fail, and the
    run deviates (a replacement that never became Ready in time is not a warning).
    """
    config, driver = driver_for(configuration)
    window = windows.find_window(kind=FaultKind.POD_KILL.value, target=app)
    killed = set(window.details.get("killed", [])) if window else set()
    latest = max(
        (w for w in windows.windows() if app in w.details.get("ready_before", {})),
        key=lambda w: w.started_at,
        default=None,
    )
    if replicas is None:
        replicas = ready_before(latest, app) if latest else 1
    zones: dict[str, int] = (
        dict((latest.details.get("zones_before") or {}).get(app, {})) if per_zone and latest else {}
    )
    deadline = time.monotonic() + timeout_seconds
    started = time.monotonic()
    while True:
        pods = driver.list_pods(app)
        ready = [p.name for p in pods if p.ready and p.name not in killed]
        short = {
            zone: wanted
            for zone, wanted in zones.items()
            if sum(1 for p in pods if p.ready and p.name not in killed and p.zone == zone) < wanted
        }
        if len(ready) >= replicas and not short:
            return {
                "ready": ready,
                "waited_seconds": round(time.monotonic() - started, 3),
                "window": close_fault_windows(config, FaultKind.POD_KILL, app),
            }
        if time.monotonic() >= deadline:
            why = (
                f"{app} has {len(ready)} ready replacement pod(s) of {replicas} after "
                f"{timeout_seconds:g} s"
                + (
                    f", zones short of their pods before the fault: {sorted(short)}"
                    if short
                    else ""
                )
                + f" (pods: {[(p.name, p.zone, p.ready) for p in pods]})"
            )
            windows.record_await_timeout(app, why)
            raise ActivityFailed(f"{why}; look at the pod logs under .helius/stack/")
        time.sleep(0.5)


def scale_app(
    app: str,
    replicas: int = 0,
    ttl_seconds: float = 90.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Run only `replicas` replicas of `app` (0: a full outage) until `restore_scale` or the TTL.

    The TTL is the dead-man's switch: set it a little longer than the planned hold.
    """
    return inject_fault(
        configuration,
        FaultKind.SCALE,
        app,
        lambda driver: driver.scale(app, replicas, ttl_seconds),
        lambda fault, before: {
            "replicas": replicas,
            "ttl_seconds": ttl_seconds,
            "expires_at": fault.expires_at,
            **before,
        },
    )


def restore_scale(
    app: str, configuration: Configuration = None, secrets: Secrets = None
) -> dict[str, Any]:
    """Undo every scale fault on `app` (safe to run twice: the second finds nothing to undo)."""
    return undo_fault(configuration, FaultKind.SCALE, app, lambda d: d.restore_scale(app))
