"""Network probes: which faults a dependency edge carries right now."""

from __future__ import annotations

from typing import Any

from chaoslib.types import Configuration, Secrets

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
    same pods as when the fault started, all ready: they recovered without a restart.
    Vacuous before the fault."""
    before = set(judged.window.details.get("source_pods", []))
    pods = judged.driver.list_pods(EDGE_SOURCE[edge])
    now = {p.name for p in pods}
    not_ready = sorted(p.name for p in pods if not p.ready)
    replaced = sorted(before - now)
    ok = bool(before) and not replaced and not not_ready
    return judged.result(
        ok,
        len(replaced),
        f"{EDGE_SOURCE[edge]} pods at the fault's start {sorted(before)}; "
        + (f"replaced since: {replaced}" if replaced else "none replaced")
        + (f"; not ready: {not_ready}" if not_ready else ""),
    )
