"""Network probes: which faults a dependency edge carries right now."""

from __future__ import annotations

from typing import Any

from chaoslib.types import Configuration, Secrets

from chaoshelius import windows
from chaoshelius.drivers import driver_for
from chaoshelius.slo.verdict import Judged, gated, verdict, window_probe
from chaoshelius.topology import EDGE_SOURCE, FaultKind

KIND_PATH = FaultKind.PATH.value

__all__ = ["path_is_clear", "source_pods_unchanged"]


def path_is_clear(
    edge: str, configuration: Configuration = None, secrets: Secrets = None
) -> dict[str, Any]:
    """`ok` when the target holds no fault on `edge` (nothing left behind by a run)."""
    _, driver = driver_for(configuration)
    faults = [f.id for f in driver.active_faults() if f.kind == KIND_PATH and f.target == edge]
    return gated(
        verdict(
            not faults,
            len(faults),
            0,
            f"edge {edge}: " + (f"faults still active {faults}" if faults else "no active fault"),
            faults=faults,
        )
    )


@window_probe(kind=KIND_PATH, target_from="edge")
def source_pods_unchanged(
    judged: Judged,
    edge: str,
    window_id: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """`ok` when the pods on the calling side of `edge` (e.g. MLflow for `mlflow-rds`) are the
    same pods as when the fault started, none restarted, all ready: they recovered without a
    restart. Vacuous before the fault.

    A restart is a pod gone (the local supervisor renames a restarted pod) or a pod whose
    restart count grew since the fault's start (the kubelet restarts a container in place:
    same name, `restartCount` + 1; the fault action recorded the counts in
    `restarts_before`). A window recorded without counts is judged on names only."""
    source = EDGE_SOURCE[edge]
    before = set(judged.window.details.get("source_pods", []))
    counts = windows.restarts_before(judged.window, source)
    pods = judged.driver.list_pods(source)
    now = {p.name for p in pods}
    not_ready = sorted(p.name for p in pods if not p.ready)
    replaced = sorted(before - now)
    restarted = sorted(
        f"{p.name} ({p.restarts - counts[p.name]}x)"
        for p in pods
        if p.name in before and p.name in counts and p.restarts > counts[p.name]
    )
    ok = bool(before) and not replaced and not restarted and not not_ready
    return judged.result(
        ok,
        len(replaced) + len(restarted),
        f"{source} pods at the fault's start {sorted(before)}; "
        + (f"replaced since: {replaced}" if replaced else "none replaced")
        + (f"; restarted in place since: {restarted}" if restarted else "")
        + (f"; not ready: {not_ready}" if not_ready else ""),
        restarts={p.name: p.restarts for p in pods},
    )
