"""Fault bookkeeping: every fault has a TTL; the supervisor reverts it at expiry.

Pure logic (the clock is passed in) so the TTL rules are unit-tested without a stack. One fault
per (kind, target): injecting again replaces the earlier one (new params, new TTL).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from chaoshelius.topology import FaultKind

__all__ = ["MAX_TTL_SECONDS", "Fault", "FaultBook", "FaultKind"]

MAX_TTL_SECONDS = 3600.0
# the stack's kinds: PATH (target: an edge; params: mode, latency_ms), DRAIN (target: a zone),
# SCALE (target: an app; params: replicas)


@dataclass(frozen=True)
class Fault:
    id: str
    kind: FaultKind
    target: str
    params: dict[str, Any]
    started_at: float
    expires_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": str(self.kind),
            "target": self.target,
            "params": dict(self.params),
            "started_at": self.started_at,
            "expires_at": self.expires_at,
        }


@dataclass
class FaultBook:
    """Active faults keyed by (kind, target)."""

    _faults: dict[tuple[FaultKind, str], Fault] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add(
        self, kind: FaultKind, target: str, params: dict[str, Any], ttl_seconds: float, now: float
    ) -> tuple[Fault, Fault | None]:
        """Record a fault; return it and the one it replaced (if any)."""
        if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
            raise ValueError(
                f"ttl_seconds must be in (0, {MAX_TTL_SECONDS:.0f}], got {ttl_seconds}"
            )
        fault = Fault(f"{kind}-{next(self._ids)}", kind, target, params, now, now + ttl_seconds)
        replaced = self._faults.get((kind, target))
        self._faults[(kind, target)] = fault
        return fault, replaced

    def remove(self, kind: FaultKind, target: str) -> Fault | None:
        """Forget the fault on (kind, target); None if there was none (idempotent)."""
        return self._faults.pop((kind, target), None)

    def remove_id(self, fault_id: str) -> Fault | None:
        for key, fault in list(self._faults.items()):
            if fault.id == fault_id:
                return self._faults.pop(key)
        return None

    def get(self, kind: FaultKind, target: str) -> Fault | None:
        return self._faults.get((kind, target))

    def pop_expired(self, now: float) -> list[Fault]:
        """Remove and return the faults whose TTL has passed."""
        expired = [f for f in self._faults.values() if f.expires_at <= now]
        for fault in expired:
            del self._faults[(fault.kind, fault.target)]
        return expired

    def active(self) -> list[Fault]:
        return sorted(self._faults.values(), key=lambda f: f.started_at)
