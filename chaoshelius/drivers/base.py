"""What every target driver offers the activities: a small, typed fault vocabulary.

Activities (pods/, network/, zones/) never talk to a target directly; they call a `Driver`
chosen by `get_driver(config)` from the configuration key `target`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from chaoshelius.exceptions import TargetError
from chaoshelius.load.plan import LoadPlan
from chaoshelius.topology import PathMode


@dataclass(frozen=True)
class PodInfo:
    """One replica of an app, as the target sees it.

    `ready`: the pod is in service (kubernetes: its `Ready` condition; local: the supervisor's
    readiness probe of the pod's `/ready` path). `restarts`: how often its containers were
    restarted in place (kubernetes: the sum of `containerStatuses[].restartCount`, which a
    liveness or OOM restart increments while the pod keeps its name; local: the slot's restart
    count, and a restarted local pod also gets a new name). Default 0, so callers that build
    a PodInfo without it keep working.
    """

    name: str
    app: str
    zone: str | None
    ready: bool
    restarts: int = 0


@dataclass(frozen=True)
class FaultRef:
    """A fault the target holds: what undoes it and when it expires by itself."""

    id: str
    kind: str  # a topology.FaultKind value
    target: str
    started_at: float | None = None
    expires_at: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Driver(Protocol):
    """The operations a fault domain needs. Every undo is safe to call twice."""

    name: str

    def list_pods(self, app: str, zone: str | None = None) -> list[PodInfo]:
        """Pods of `app` (optionally in one zone)."""
        ...

    def kill_pods(
        self,
        app: str,
        count: int | None = None,
        zone: str | None = None,
        grace_period_seconds: int | None = 0,
    ) -> list[str]:
        """Kill `count` pods of `app` (all when None); return the names killed.

        `grace_period_seconds`: 0 kills (no shutdown); None deletes gracefully with the pod's
        own grace period; n > 0 gives it n seconds (see `check_grace_period`).
        """
        ...

    def scale(self, app: str, replicas: int, ttl_seconds: float) -> FaultRef:
        """Run `replicas` replicas of `app` until `restore_scale` or the TTL."""
        ...

    def restore_scale(self, app: str) -> list[str]:
        """Undo every scale fault on `app`; return the ids undone (empty if none)."""
        ...

    def cut_path(
        self, edge: str, mode: PathMode, latency_ms: int | None, ttl_seconds: float
    ) -> FaultRef:
        """Degrade the dependency edge `edge` until `restore_path` or the TTL."""
        ...

    def restore_path(self, edge: str) -> list[str]:
        """Undo every fault on `edge`; return the ids undone (empty if none)."""
        ...

    def drain_zone(self, zone: str, ttl_seconds: float) -> FaultRef:
        """Stop every pod of the zone and keep them down until `uncordon_zone` or the TTL."""
        ...

    def uncordon_zone(self, zone: str) -> list[str]:
        """Undo a zone drain; return the ids undone (empty if none)."""
        ...

    def active_faults(self) -> list[FaultRef]:
        """Faults the target currently holds."""
        ...


def check_grace_period(value: object) -> int | None:
    """A pod kill's grace period: None (the pod's own) or whole seconds >= 0; TargetError
    (one line, what to write) otherwise. Booleans are refused: `true` is not a duration."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TargetError(
            f"grace_period_seconds must be 0 (kill), a whole number of seconds or null (the "
            f"pod's own grace period), got {value!r}"
        )
    return value


@runtime_checkable
class LoadGenerator(Protocol):
    """A target that runs the client load itself (kubernetes: the in-cluster Locust).

    chaoshelius.load.actions dispatches to it when the driver offers it
    (`isinstance(driver, LoadGenerator)`); the local target runs Locust as a child process.
    """

    def start_load(self, plan: LoadPlan) -> dict[str, Any]:
        """Start the load `plan` describes (its Locust options, `processes` workers), bounded
        by its `duration_seconds` even if nobody stops it."""
        ...

    def stop_load(self) -> dict[str, Any]:
        """Stop the load (safe to run twice); `{"stopped": bool, ...}`."""
        ...
