"""Recovery of the pods: `up` targets back (per app or per zone) and Ready as the target sees
them, within the allowance after the fault."""

from __future__ import annotations

from typing import Any

from chaoslib.types import Configuration, Secrets

from chaoshelius import windows
from chaoshelius.slo import queries as pq
from chaoshelius.slo import verdict as clock
from chaoshelius.slo.verdict import Judged, window_probe
from chaoshelius.topology import FaultKind

__all__ = ["replicas_recovered_within"]


@window_probe()
def replicas_recovered_within(
    judged: Judged,
    app: str,
    seconds: float,
    replicas: int | None = None,
    per_zone: bool = False,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """`ok` when Prometheus saw `replicas` `up` targets of `app` again within `seconds` of the
    fault's end (of its start for an instant fault such as a kill), and still does now, and the
    target reports those pods Ready.
    `replicas` defaults to the ready count the fault action recorded for `app`.
    Reports `time_to_recover_seconds` (from the first dip below `replicas`).

    `per_zone`: every zone must be back to the targets it had when the fault started (a
    zone's pods rescheduled into the other zones are not "back": the count is right, the
    spread is not).

    "Back" means serving, not only scrapable: a pod can answer `/metrics` while its `/ready`
    says 503 (e.g. a readiness that needs one successful registry refresh during an MLflow
    outage), and `up` would count it. So the verdict also needs, from the driver (the `Ready`
    condition on a cluster, the supervisor's probe of `/ready` locally): `replicas` Ready pods
    of `app` now (per zone: each zone's Ready pods as many as when the fault started); for a
    kill closed by `await_pods_ready`, replacements Ready within `seconds` of the kill (the
    window's end is when the await saw them Ready); and no await for `app` timed out in this
    run (Chaos Toolkit only logs a failed method action, so a replacement that never became
    Ready in time would otherwise pass on `up` alone)."""
    window = judged.window
    if replicas is None and not per_zone:
        replicas = windows.ready_before(window, app)
        judged.threshold["replicas"] = replicas
    result = (
        _zones_recovered(judged, app, seconds)
        if per_zone
        else _up_recovered(judged, app, seconds, int(replicas or 1))
    )
    problems = _not_ready(judged, app, seconds, None if per_zone else int(replicas or 1))
    if problems:
        result["ok"] = False
        result["description"] += "; FAILED on readiness: " + "; ".join(problems)
    return result


def _not_ready(judged: Judged, app: str, seconds: float, replicas: int | None) -> list[str]:
    """Why `app` is not back as the target sees it (Ready pods), see replicas_recovered_within;
    `replicas` None: per zone, against the ready pods each zone had at the fault's start."""
    window = judged.window
    problems = [f"an await for {app} timed out: {why}" for why in windows.await_timeouts(app)]
    pods = judged.driver.list_pods(app)
    ready = [p for p in pods if p.ready]
    if replicas is not None and len(ready) < replicas:
        problems.append(f"{len(ready)} of {replicas} {app} pod(s) Ready now")
    if replicas is None:
        wanted = (window.details.get("zones_before") or {}).get(app, {})
        for zone, count in sorted(wanted.items()):
            here = sum(1 for p in ready if (p.zone or "?") == zone)
            if here < int(count):
                problems.append(f"{zone}: {here} of {count} {app} pod(s) Ready now")
    if window.kind == FaultKind.POD_KILL.value and window.ended_at is not None:
        ready_after = window.ended_at - window.started_at
        if ready_after > seconds:
            problems.append(
                f"the replacement(s) were Ready {ready_after:.1f} s after the kill "
                f"(allowed {seconds:g} s)"
            )
    return problems


def _up_recovered(judged: Judged, app: str, seconds: float, replicas: int) -> dict[str, Any]:
    """The `up` half of replicas_recovered_within (Prometheus's scrapes)."""
    window = judged.window
    start, ref = window.started_at, _recovery_reference(window)
    now = clock.now()
    q = pq.up_count(app)
    series = judged.prometheus.range_series(q, start, now)
    points = series[0].points if series else []
    if not points:
        return judged.result(False, None, f"no up data for {app}", q)
    dipped, back = _dip_and_back(points, replicas)
    last = points[-1][1]
    # never seen below `replicas`: the replacement came up within a scrape interval
    if last < replicas or (back is None and dipped is not None):
        return judged.result(
            False,
            None,
            f"{app}: {last:.0f} of {replicas} targets up now, {now - ref:.0f} s after the fault",
            q,
            time_to_recover_seconds=None,
        )
    ttr = max(0.0, back - ref) if back is not None else 0.0
    return judged.result(
        ttr <= seconds,
        ttr,
        f"{app}: back to {replicas} up targets {ttr:.1f} s after the fault "
        + ("(never seen below)" if dipped is None else f"(dipped at +{dipped - start:.1f} s)"),
        q,
        time_to_recover_seconds=ttr,
    )


def _recovery_reference(window: windows.Window) -> float:
    """When recovery is timed from: the fault's end, or its start for an instant fault (a kill)."""
    instant_fault = window.kind == FaultKind.POD_KILL.value
    if window.ended_at is not None and not instant_fault:
        return window.ended_at
    return window.started_at


def _dip_and_back(
    points: list[tuple[float, float]], wanted: float
) -> tuple[float | None, float | None]:
    """When a count first fell below `wanted`, and when it was back at `wanted` for good (None:
    never fell / not back now)."""
    dipped = next((t for t, v in points if v < wanted), None)
    back = None
    for t, v in points:
        if dipped is None or t < dipped:
            continue
        back = (back if back is not None else t) if v >= wanted else None
    return dipped, back


def _zones_recovered(judged: Judged, app: str, seconds: float) -> dict[str, Any]:
    window = judged.window
    start, ref = window.started_at, _recovery_reference(window)
    now = clock.now()
    q = pq.up_count_by_zone(app)
    before = {s.labels.get("zone", "?"): s.value for s in judged.prometheus.instant(q, at=start)}
    judged.threshold["per_zone"] = before
    if not before:
        return judged.result(False, None, f"no up data for {app} when the fault started", q)
    series = {
        s.labels.get("zone", "?"): dict(s.points)
        for s in judged.prometheus.range_series(q, start, now)
    }
    steps = sorted({t for points in series.values() for t in points})
    late: dict[str, float | None] = {}  # zone -> s after the fault it was back (None: it is not)
    for zone, wanted in before.items():
        points = series.get(zone, {})
        counts = [(t, points.get(t, 0.0)) for t in steps]  # no series at a step: none up
        dipped, back = _dip_and_back(counts, wanted)
        late[zone] = 0.0 if dipped is None else None if back is None else max(0.0, back - ref)
    missing = sorted(z for z, t in late.items() if t is None)
    if missing:
        last = steps[-1] if steps else now
        now_up = {z: series.get(z, {}).get(last, 0.0) for z in sorted(before)}
        return judged.result(
            False,
            None,
            f"{app}: {missing} not back to the up targets they had before the fault "
            f"{now - ref:.0f} s after it (per zone before: {before}, now: {now_up})",
            q,
            time_to_recover_seconds=None,
            per_zone_seconds=late,
        )
    ttr = max(t for t in late.values() if t is not None)
    return judged.result(
        ttr <= seconds,
        ttr,
        f"{app}: every zone back to its up targets {ttr:.1f} s after the fault "
        f"(per zone: { ({z: round(t, 1) for z, t in late.items() if t is not None}) })",
        q,
        time_to_recover_seconds=ttr,
        per_zone_seconds=late,
    )
