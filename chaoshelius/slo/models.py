"""The model the recommenders serve after the fault, against the registry's champion now."""

from __future__ import annotations

from typing import Any

from chaoslib.types import Configuration, Secrets

from chaoshelius import registry
from chaoshelius.slo import queries as pq
from chaoshelius.slo import verdict as clock
from chaoshelius.slo.verdict import Judged, fmt_number, window_probe
from chaoshelius.topology import MODEL_ALIAS, MODEL_INFO, MODEL_NAME, App

__all__ = ["models_converged_within"]


@window_probe()
def models_converged_within(
    judged: Judged,
    seconds: float,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Every recommender pod serves the registry's current model (`reco@champion`, asked from
    MLflow now) and reached it within `seconds` of the fault's end: a model promoted while the
    registry was unreachable, or an outage, leaves no pod stuck on an old version.
    Reports `time_to_converge_seconds` (the slowest pod, from the fault's end)."""
    if judged.window.ended_at is None:
        return judged.result(False, None, "the fault has not ended (no restore recorded)")
    version = registry.champion_version(judged.config)
    end = judged.end
    now = clock.now()
    sel = pq.selector(MODEL_INFO, app=App.RECO.value)
    q = pq.raw_range(sel, judged.start - 10.0, now)
    series = judged.prometheus.matrix(q)
    by_pod: dict[str, list[tuple[float, str]]] = {}
    for s in series:
        pod = s.labels.get("pod", "?")
        by_pod.setdefault(pod, []).extend((t, s.labels.get("version", "?")) for t, _ in s.points)
    live = {p: sorted(pts) for p, pts in by_pod.items() if max(t for t, _ in pts) >= now - 5.0}
    if not live:
        return judged.result(False, None, f"no {MODEL_INFO} data from any recommender now", q)
    problems = []
    reached: dict[str, float] = {}
    for pod, pts in sorted(live.items()):
        current = pts[-1][1]
        if current != version:
            problems.append(f"{pod} serves version {current}")
            continue
        # the start of the last run of samples on the registry's version
        first = pts[-1][0]
        for t, v in reversed(pts):
            if v != version:
                break
            first = t
        reached[pod] = max(0.0, first - end)
        if first - end > seconds:
            problems.append(f"{pod} reached version {version} {first - end:.1f} s after")
    slowest = max(reached.values()) if reached else None
    return judged.result(
        not problems,
        slowest,
        f"registry {MODEL_NAME}@{MODEL_ALIAS} = version {version}; {len(live)} pod(s): "
        + (
            "; ".join(problems)
            if problems
            else f"all on it within {fmt_number(slowest, 3)} s of the fault's end "
            f"(allowed {seconds:g} s)"
        ),
        q,
        registry_version=version,
        time_to_converge_seconds=slowest,
    )
