"""The recommenders' memory over a run: judged per pod from prometheus_client's process
collector (`process_resident_memory_bytes`), so a leak in one pod is not averaged away."""

from __future__ import annotations

from typing import Any

from chaoslib.types import Configuration, Secrets

from chaoshelius import windows
from chaoshelius.slo import queries as pq
from chaoshelius.slo import verdict as clock
from chaoshelius.slo.verdict import Judged, fmt_number, window_probe
from chaoshelius.topology import RESIDENT_MEMORY, App

__all__ = ["memory_growth_within"]

MIB = 1024.0 * 1024.0
# samples this long before the first fault are read for each pod's baseline
_LOOKBACK_SECONDS = 30.0


def _growth(points: list[tuple[float, float]], baseline_at: float) -> tuple[float, float, float]:
    """(baseline time, baseline bytes, growth in bytes) of one pod: from its last sample at or
    before `baseline_at` (its first sample, for a pod born after it) to its last sample."""
    before = [p for p in points if p[0] <= baseline_at]
    t0, v0 = before[-1] if before else points[0]
    return t0, v0, points[-1][1] - v0


@window_probe()
def memory_growth_within(
    judged: Judged,
    max_growth_mib: float,
    app: str = App.RECO.value,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Every pod of `app` grew its resident memory by at most `max_growth_mib` MiB over the
    run: from its baseline after the warm-up (its last sample at or before this run's first
    fault started; a pod started later, e.g. a replacement, from its own first sample) to its
    last sample (now, or when it went). A steady service keeps a flat RSS under a steady load;
    a cache that is never evicted grows with every request. No data fails (the process
    collector is on every recommender's registry). Reports `value`: the largest growth in MiB,
    `pods`: each pod's growth in MiB."""
    first = min((w.started_at for w in windows.windows()), default=judged.start)
    end = max(clock.now(), first + 1.0)
    q = pq.raw_range(pq.selector(RESIDENT_MEMORY, app=app), first - _LOOKBACK_SECONDS, end)
    series = [s for s in judged.prometheus.matrix(q) if s.points]
    if not series:
        return judged.result(False, None, f"no {RESIDENT_MEMORY} data for {app} over the run", q)
    problems: list[str] = []
    grown: dict[str, float] = {}
    for s in sorted(series, key=lambda s: s.labels.get("pod", "?")):
        pod = s.labels.get("pod", "?")
        t0, v0, growth = _growth(s.points, first)
        grown[pod] = growth / MIB
        if growth / MIB > max_growth_mib:
            problems.append(
                f"{pod} grew {growth / MIB:.1f} MiB (from {v0 / MIB:.0f} MiB at "
                f"{t0 - first:+.0f} s to +{s.points[-1][0] - first:.0f} s)"
            )
    largest = max(grown.values())
    return judged.result(
        not problems,
        largest,
        f"{len(series)} {app} pod(s) from the first fault to the end: "
        + (
            "; ".join(problems)
            if problems
            else f"largest growth {fmt_number(largest, 3)} MiB (allowed {max_growth_mib:g} MiB)"
        ),
        q,
        pods={pod: round(v, 2) for pod, v in grown.items()},
    )
