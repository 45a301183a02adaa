"""The one shape of a fault action and of its undo, shared by pods/, network/ and zones/.

A fault action: mark the fault phase (first, before anything can fail), take the fleet's
snapshot, inject through the driver, open the fault's window (chaoshelius.windows) with what
it did and the snapshot, and return the fault and the window. An undo: undo through the
driver, close the matching open windows, and return what was undone and the window closed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chaoslib.types import Configuration

from chaoshelius import windows
from chaoshelius.config import HarnessConfig
from chaoshelius.drivers import Driver, FaultRef, driver_for, fleet_snapshot
from chaoshelius.topology import FaultKind

__all__ = [
    "FaultStart",
    "begin_fault",
    "close_fault_windows",
    "closed_output",
    "inject_fault",
    "undo_fault",
]

Details = Callable[[FaultRef, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class FaultStart:
    """A fault action under way: its configuration, driver and the fleet before the fault."""

    config: HarnessConfig
    driver: Driver
    before: dict[str, Any]

    def open(
        self,
        kind: FaultKind,
        target: str,
        details: dict[str, Any],
        window_id: str | None = None,
        started_at: float | None = None,
    ) -> windows.Window:
        """Open the fault's window in this run's directory."""
        return windows.open_window(
            self.config.helius_run_dir,
            kind.value,
            target,
            window_id=window_id,
            details=details,
            started_at=started_at,
        )


def begin_fault(configuration: Configuration) -> FaultStart:
    """Mark the fault phase, then find the driver and take the fleet's snapshot."""
    windows.mark_fault_phase()
    config, driver = driver_for(configuration)
    return FaultStart(config, driver, fleet_snapshot(driver))


def inject_fault(
    configuration: Configuration,
    kind: FaultKind,
    target: str,
    inject: Callable[[Driver], FaultRef],
    details: Details,
    start_at_fault: bool = False,
) -> dict[str, Any]:
    """Inject a TTL-bound fault and open its window (id: the fault's id).

    `details(fault, before)`: the window's details. `start_at_fault`: the window starts when the
    driver says the fault did (a drain that returns once the pods are gone), not now.
    Returns `{"fault", "expires_at", "window"}`.
    """
    start = begin_fault(configuration)
    fault = inject(start.driver)
    window = start.open(
        kind,
        target,
        details(fault, start.before),
        window_id=fault.id,
        started_at=fault.started_at if start_at_fault else None,
    )
    return {"fault": fault.id, "expires_at": fault.expires_at, "window": window.as_output()}


def closed_output(closed: list[windows.Window]) -> dict[str, Any] | None:
    """What an undo returns under `"window"`: the first window it closed, or None."""
    return closed[0].as_close_output() if closed else None


def close_fault_windows(
    config: HarnessConfig, kind: FaultKind, target: str, lifting_at: float | None = None
) -> dict[str, Any] | None:
    """Close the open windows of `kind` on `target` (their undo began at `lifting_at`);
    `closed_output` of them."""
    return closed_output(
        windows.close_windows(
            config.helius_run_dir, kind=kind.value, target=target, lifting_at=lifting_at
        )
    )


def undo_fault(
    configuration: Configuration,
    kind: FaultKind,
    target: str,
    undo: Callable[[Driver], list[str]],
) -> dict[str, Any]:
    """Undo through the driver (safe to run twice), then close the fault's open windows.

    Returns `{"undone": [ids], "window": {...} | None}`.
    """
    config, driver = driver_for(configuration)
    lifting = time.time()  # the dependency may be back from here: the undo takes its time
    undone = undo(driver)
    return {"undone": undone, "window": close_fault_windows(config, kind, target, lifting)}
