"""The recommenders' fallback, judged per pod from the fallback gauge's raw samples (never a
`max()`, where one honest pod hides a lying or unscraped one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chaoslib.types import Configuration, Secrets

from chaoshelius import windows
from chaoshelius.slo import queries as pq
from chaoshelius.slo import verdict as clock
from chaoshelius.slo.verdict import Judged, fmt_number, window_probe
from chaoshelius.topology import FALLBACK_GAUGE, App, FaultKind

__all__ = ["fallback_cleared_within", "fallback_engaged_within", "fallback_never_engaged"]

# a pod's samples this close to the fault's start count as "present when it started"
_PRESENT_SLACK_SECONDS = 3.0


@dataclass
class _PodGauge:
    pod: str
    zone: str
    points: list[tuple[float, float]]

    @property
    def born(self) -> float:
        return self.points[0][0]

    @property
    def last_seen(self) -> float:
        return self.points[-1][0]


def _gauges(judged: Judged, start: float, end: float) -> tuple[str, list[_PodGauge]]:
    """Raw per-pod samples of the fallback gauge in [start, end] (real scrape times)."""
    sel = pq.selector(FALLBACK_GAUGE, app=App.RECO.value)
    q = pq.raw_range(sel, start, end)
    series = judged.prometheus.matrix(q)
    pods = [
        _PodGauge(s.labels.get("pod", "?"), s.labels.get("zone", "?"), s.points)
        for s in series
        if s.points
    ]
    return q, sorted(pods, key=lambda g: g.pod)


def _scrape_interval(pods: list[_PodGauge]) -> float:
    """The scrape interval the samples show (median spacing; 1 s if there are too few)."""
    gaps = sorted(
        b - a for g in pods for (a, _), (b, _) in zip(g.points, g.points[1:], strict=False)
    )
    return gaps[len(gaps) // 2] if gaps else 1.0


def _dependency_back_at(judged: Judged, after_app_back: str | None) -> float | None:
    """When the fault's dependency was back: the fault's end, or (with `after_app_back`) when
    Prometheus first scraped a target of that app again after it. None: never came back."""
    end = judged.end
    if not after_app_back:
        return end
    q = pq.up_count(after_app_back)
    series = judged.prometheus.range_series(q, end, max(clock.now(), end + 1))
    return next((t for s in series for t, v in s.points if v >= 1), None)


@window_probe()
def fallback_engaged_within(
    judged: Judged,
    seconds: float,
    after_app_back: str | None = None,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Every recommender pod reported fallback (gauge 1) within `seconds` of the fault's start
    (of its own start, for a pod born during the fault) and **kept reporting it until the
    dependency was back**: the fault's end (from the start of the undo that ended it: a slow
    undo call is not a pod clearing early), or with `after_app_back` (e.g. "mlflow") the moment
    Prometheus scraped that app again.

    Fails when any pod never reported 1, reported it late, cleared before the dependency was
    back, or was not scraped during the fault (a pod nobody hears from proves nothing); a pod
    this run killed on purpose (a `pod-kill` window) may stop reporting.
    Reports `time_to_fallback_seconds` (the slowest pod)."""
    start = judged.start
    back = _dependency_back_at(judged, after_app_back) or judged.end
    # the earliest the dependency may have been back: the undo's start (a slow undo call
    # is not a pod clearing early)
    lifting = judged.window.lifting_at
    lifted = back if after_app_back or lifting is None else min(back, lifting)
    q, pods = _gauges(judged, start - 10.0, back)
    if not pods:
        return judged.result(False, None, f"no {FALLBACK_GAUGE} data in the fault window", q)
    problems: list[str] = []
    engaged: dict[str, float] = {}
    killed = {str(p) for w in windows.windows() for p in w.details.get("killed", [])}
    slack = 2 * _scrape_interval(pods) if after_app_back else 0.5
    for gauge in pods:
        present = gauge.born <= start + _PRESENT_SLACK_SECONDS
        ref = start if present else gauge.born
        inside = [(t, v) for t, v in gauge.points if t >= ref]
        if not inside:
            problems.append(f"{gauge.pod} was not scraped after the fault started")
            continue
        first = next((t for t, v in inside if v >= 1), None)
        if first is None:
            problems.append(f"{gauge.pod} never reported fallback")
            continue
        engaged[gauge.pod] = first - ref
        if first - ref > seconds:
            problems.append(f"{gauge.pod} reported fallback only after {first - ref:.1f} s")
        # the dependency's return is seen through its own scrape, the clear through the pod's:
        # each is up to one scrape interval late, so a clear closer to `back` than two
        # intervals is the same moment (a pod that reached the first MLflow replica up)
        cleared = next((t for t, v in inside if t > first and t < lifted - slack and v < 1), None)
        if cleared is not None:
            problems.append(
                f"{gauge.pod} cleared at +{cleared - start:.1f} s, before the dependency was "
                f"back (+{back - start:.1f} s)"
            )
        if gauge.last_seen < back - 5.0 and gauge.pod not in killed:
            problems.append(f"{gauge.pod} stopped reporting at +{gauge.last_seen - start:.1f} s")
    slowest = max(engaged.values()) if engaged else None
    return judged.result(
        not problems,
        slowest,
        f"{len(pods)} recommender pod(s): "
        + (
            "; ".join(problems)
            if problems
            else f"all reported fallback within {fmt_number(slowest, 3)} s and held it until the "
            f"dependency was back (+{back - start:.1f} s); allowed {seconds:g} s"
        ),
        q,
        time_to_fallback_seconds=slowest,
        pods={pod: round(v, 3) for pod, v in engaged.items()},
    )


@window_probe()
def fallback_cleared_within(
    judged: Judged,
    seconds: float,
    after_app_back: str | None = None,
    recovery_seconds: float | None = None,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Every recommender pod was back at 0 within `seconds` of the dependency being back (the
    fault's end, or with `after_app_back` when Prometheus scraped that app again) and stayed 0
    since, until the load stopped (or `recovery_seconds` after the fault's end). A pod still in
    fallback, one that flapped back to 1, or one reporting nothing after the fault fails.
    Reports `time_to_recover_seconds` (the slowest pod, from the dependency's
    return) and `fault_to_recover_seconds` (from the fault's end)."""
    if judged.window.ended_at is None:
        return judged.result(False, None, "the fault has not ended (no restore recorded)")
    end = judged.end
    now = judged.recovery_end(recovery_seconds)
    back = _dependency_back_at(judged, after_app_back)
    if back is None:
        return judged.result(False, None, f"{after_app_back} never came back after the fault")
    q, pods = _gauges(judged, end, now)
    if not pods:
        return judged.result(False, None, f"no {FALLBACK_GAUGE} data after the fault", q)
    problems: list[str] = []
    cleared: dict[str, float] = {}
    for gauge in pods:
        if gauge.last_seen < now - 5.0:
            continue  # a pod gone since (replaced): its replacement is judged instead
        last_one = max((t for t, v in gauge.points if v >= 1), default=None)
        clear_at = next(
            (t for t, v in gauge.points if v < 1 and (last_one is None or t > last_one)), None
        )
        if clear_at is None:
            problems.append(f"{gauge.pod} still in fallback {now - back:.0f} s after recovery")
            continue
        since_back = max(0.0, clear_at - back)
        cleared[gauge.pod] = since_back
        if since_back > seconds:
            problems.append(f"{gauge.pod} cleared {since_back:.1f} s after the dependency")
    before = set(windows.pods_before(judged.window, App.RECO.value))
    seen = {g.pod for g in pods}
    if before and not before & seen and not cleared:
        problems.append("none of the recommenders of the fault's start reports any more")
    slowest = max(cleared.values()) if cleared else None
    where = f"{after_app_back} was back" if after_app_back else "the fault ended"
    return judged.result(
        not problems and bool(cleared),
        slowest,
        f"{len(cleared)} recommender pod(s) out of fallback "
        + (
            f"within {fmt_number(slowest, 3)} s after {where} (allowed {seconds:g} s)"
            if not problems
            else f"; FAILED: {'; '.join(problems)}"
        ),
        q,
        time_to_recover_seconds=slowest,
        fault_to_recover_seconds=None if slowest is None else slowest + (back - end),
        app_back_after_seconds=back - end,
        pods={pod: round(v, 3) for pod, v in cleared.items()},
    )


@window_probe()
def fallback_never_engaged(
    judged: Judged,
    grace_seconds: float = 5.0,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """No recommender pod reported fallback from the fault's start to `grace_seconds` after
    its end (HA should have absorbed the fault), and every pod that the fault did not target
    was scraped throughout. No data fails."""
    start = judged.start
    stop = min(clock.now(), judged.end + grace_seconds)
    q, pods = _gauges(judged, start, stop)
    if not pods:
        return judged.result(False, None, f"no {FALLBACK_GAUGE} data in the fault window", q)
    targeted = set(judged.window.details.get("killed", []))
    # and the pods a kubernetes drain evicted ("namespace/name"): evicted within a scrape
    # interval of the drain's start, they may never be scraped in the window
    targeted |= {str(p).rsplit("/", 1)[-1] for p in judged.window.details.get("evicted", [])}
    drained = judged.window.target if judged.window.kind == FaultKind.DRAIN.value else None
    problems = []
    highest = 0.0
    for gauge in pods:
        ones = [t for t, v in gauge.points if v >= 1]
        highest = max(highest, max(v for _, v in gauge.points))
        if ones:
            problems.append(f"{gauge.pod} reported fallback at +{ones[0] - start:.1f} s")
    expected = {p for p in windows.pods_before(judged.window, App.RECO.value) if p not in targeted}
    if drained:
        expected -= {g.pod for g in pods if g.zone == drained}
    missing = sorted(expected - {g.pod for g in pods})
    if missing:
        problems.append(f"not scraped during the fault: {missing}")
    return judged.result(
        not problems,
        highest,
        f"{len(pods)} recommender pod(s) during the fault: "
        + ("; ".join(problems) if problems else "none reported fallback"),
        q,
    )
