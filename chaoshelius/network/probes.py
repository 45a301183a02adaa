"""Network probes: which faults a dependency edge carries right now."""

from __future__ import annotations

from typing import Any

from chaoslib.types import Configuration, Secrets

from chaoshelius.drivers import driver_for
from chaoshelius.network.actions import EDGE_SOURCE, KIND_PATH
from chaoshelius.slo.verdict import gated, verdict, window_json, window_or_verdict

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


def source_pods_unchanged(
    edge: str,
    window_id: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """`ok` when the pods on the calling side of `edge` (e.g. MLflow for `mlflow-rds`) are the
    same pods as when the fault started, all ready: they recovered without a restart.
    Vacuous before the fault."""
    threshold = {"restarts": 0}
    window = window_or_verdict(window_id, KIND_PATH, edge, threshold)
    if isinstance(window, dict):
        return window
    before = set(window.details.get("source_pods", []))
    _, driver = driver_for(configuration)
    pods = driver.list_pods(EDGE_SOURCE[edge])
    now = {p.name for p in pods}
    not_ready = sorted(p.name for p in pods if not p.ready)
    replaced = sorted(before - now)
    ok = bool(before) and not replaced and not not_ready
    return verdict(
        ok,
        len(replaced),
        threshold,
        f"{EDGE_SOURCE[edge]} pods at the fault's start {sorted(before)}; "
        + (f"replaced since: {replaced}" if replaced else "none replaced")
        + (f"; not ready: {not_ready}" if not_ready else ""),
        window=window_json(window),
    )
