"""Network faults on a dependency edge (`mlflow-rds`, `reco-mlflow`) and their undo."""

from __future__ import annotations

from typing import Any

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from chaoshelius import windows
from chaoshelius.faults import inject_fault, undo_fault
from chaoshelius.topology import EDGE_SOURCE, EDGES, FaultKind, PathMode

__all__ = ["cut_path", "restore_path"]


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
    modes = [m.value for m in PathMode]
    if mode not in modes:
        raise ActivityFailed(f"unknown mode {mode!r}; use one of {modes}")
    if mode == PathMode.LATENCY and not latency_ms:
        raise ActivityFailed("mode 'latency' needs latency_ms (milliseconds to add)")
    return inject_fault(
        configuration,
        FaultKind.PATH,
        edge,
        lambda driver: driver.cut_path(edge, PathMode(mode), latency_ms, ttl_seconds),
        lambda fault, before: {
            "mode": mode,
            "latency_ms": latency_ms,
            "expires_at": fault.expires_at,
            "source_pods": before["pods_before"].get(EDGE_SOURCE[edge], []),
            **before,
        },
    )


def restore_path(
    edge: str, configuration: Configuration = None, secrets: Secrets = None
) -> dict[str, Any]:
    """Remove every fault on `edge` (safe to run twice)."""
    return undo_fault(configuration, FaultKind.PATH, edge, lambda driver: driver.restore_path(edge))
