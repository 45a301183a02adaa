"""The recommenders' model freshness after a fault: judged per pod from the age of their last
successful registry refresh (`reco_engine_last_successful_refresh_timestamp_seconds`), not from
the fallback gauge, which a pod that stopped asking the registry would never raise again."""

from __future__ import annotations

import time
from typing import Any

from chaoslib.types import Configuration, Secrets

from chaoshelius.slo import queries as pq
from chaoshelius.slo import verdict as clock
from chaoshelius.slo.fallback import _dependency_back_at as dependency_back_at
from chaoshelius.slo.verdict import Judged, fmt_number, window_probe
from chaoshelius.topology import LAST_REFRESH_GAUGE, App

__all__ = ["refresh_fresh_after_recovery"]

# a pod whose last sample is older than this before the judged span's end is gone (replaced)
_GONE_SECONDS = 5.0


def _ages(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(scrape time, age of the last successful refresh at that scrape) per sample; a pod that
    never refreshed successfully (0) is as old as the epoch."""
    return [(t, t - v) for t, v in points]


@window_probe()
def refresh_fresh_after_recovery(
    judged: Judged,
    max_age_seconds: float,
    min_pods: int = 1,
    after_app_back: str | None = None,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """After the dependency is back (the fault's end, or with `after_app_back` when Prometheus
    scraped that app again) and the recovery bound has passed, every recommender pod's last
    successful registry refresh is recent: at every scrape from `max_age_seconds` after the
    dependency's return until the judgement (at least `max_age_seconds` more, waited for if
    needed), its age (scrape time - the gauge) is at most `max_age_seconds`.

    So each pod confirmed the registry's model within one bound of its return and kept
    confirming it: a pod that never refreshed again, refreshed once and stopped, or reports a
    timestamp that never moves fails. A healthy pod's age at a scrape is at most one refresh
    interval + one attempt (its deadline) + one scrape interval: set `max_age_seconds` to that
    sum (the catalogue: `helius_refresh_grace_seconds`). Per pod: a pod scraped in the span
    with no success (0) fails, and fewer than `min_pods` pods still reporting at the end fails;
    a pod gone before the end (replaced) is judged until it went. Reports `value`: the oldest
    age seen, `pods`: each pod's oldest."""
    if judged.window.ended_at is None:
        return judged.result(False, None, "the fault has not ended (no restore recorded)")
    back = dependency_back_at(judged, after_app_back)
    if back is None:
        return judged.result(False, None, f"{after_app_back} never came back after the fault")
    start = back + max_age_seconds
    end = max(clock.now(), start + max_age_seconds)
    if end > clock.now():  # the judgement needs a whole bound of recovered service
        time.sleep(end - clock.now())
    q = pq.raw_range(pq.selector(LAST_REFRESH_GAUGE, app=App.RECO.value), start, end)
    series = [s for s in judged.prometheus.matrix(q) if s.points]
    if not series:
        return judged.result(False, None, f"no {LAST_REFRESH_GAUGE} data after recovery", q)
    problems: list[str] = []
    oldest: dict[str, float] = {}
    current = 0
    for s in sorted(series, key=lambda s: s.labels.get("pod", "?")):
        pod = s.labels.get("pod", "?")
        ages = _ages(s.points)
        worst_at, worst = max(ages, key=lambda a: a[1])
        oldest[pod] = worst
        current += s.points[-1][0] >= end - _GONE_SECONDS
        if worst > max_age_seconds:
            never = all(v <= 0 for _, v in s.points)
            problems.append(
                f"{pod} never refreshed successfully"
                if never
                else f"{pod}'s last successful refresh was {worst:.1f} s old at "
                f"+{worst_at - back:.1f} s after the dependency was back"
            )
    if current < min_pods:
        problems.append(f"only {current} pod(s) still reporting at the end (< {min_pods})")
    highest = max(oldest.values())
    return judged.result(
        not problems,
        highest,
        f"{len(series)} recommender pod(s) from +{max_age_seconds:g} s to "
        f"+{end - back:.0f} s after the dependency was back: "
        + (
            "; ".join(problems)
            if problems
            else f"last successful refresh at most {fmt_number(highest, 3)} s old "
            f"(allowed {max_age_seconds:g} s)"
        ),
        q,
        pods={pod: round(v, 3) for pod, v in oldest.items()},
    )
