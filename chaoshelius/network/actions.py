"""Network faults on a dependency edge (`mlflow-rds`, `reco-mlflow`) and their undo."""

from __future__ import annotations

from typing import Any

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from chaoshelius import windows
from chaoshelius.drivers import PATH_MODES, driver_for, fleet_snapshot
from chaoshelius.topology import EDGE_SOURCE, EDGES, FaultKind

__all__ = ["cut_path", "restore_path"]

KIND_PATH = FaultKind.PATH.value


def cut_path(
    edge: str,
    mode: str = "blackhole",
    latency_ms: int | None = None,
    ttl_seconds: float = 90.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Degrade the dependency `edge` until `restore_path` or the TTL.

    `mode`: `blackhole` (connections hang, like a partition or a NetworkPolicy drop), `reset`
    (refused), or `latency` (add `latency_ms`). Opens a `path` window on the edge.
    """
    windows.mark_fault_phase()
    if edge not in EDGES:
        raise ActivityFailed(f"unknown edge {edge!r}; use one of {list(EDGES)}")
    if mode not in PATH_MODES:
        raise ActivityFailed(f"unknown mode {mode!r}; use one of {list(PATH_MODES)}")
    if mode == "latency" and not latency_ms:
        raise ActivityFailed("mode 'latency' needs latency_ms (milliseconds to add)")
    config, driver = driver_for(configuration)
    before = fleet_snapshot(driver)
    source_pods = before["pods_before"].get(EDGE_SOURCE[edge], [])
    fault = driver.cut_path(edge, mode, latency_ms, ttl_seconds)
    window = windows.open_window(
        config.helius_run_dir,
        KIND_PATH,
        edge,
        window_id=fault.id,
        details={
            "mode": mode,
            "latency_ms": latency_ms,
            "expires_at": fault.expires_at,
            "source_pods": source_pods,
            **before,
        },
    )
    return {"fault": fault.id, "expires_at": fault.expires_at, "window": window.as_output()}


def restore_path(
    edge: str, configuration: Configuration = None, secrets: Secrets = None
) -> dict[str, Any]:
    """Remove every fault on `edge` (safe to run twice)."""
    config, driver = driver_for(configuration)
    undone = driver.restore_path(edge)
    closed = windows.close_windows(config.helius_run_dir, kind=KIND_PATH, target=edge)
    return {"undone": undone, "window": closed[0].as_close_output() if closed else None}
