"""The operations the control API calls on a running stack (satisfied by `daemon.Stack`).

The control API (chaoshelius/stack/control.py) depends on this protocol only, not on the
daemon that implements it, so the two do not import each other.
"""

from __future__ import annotations

from typing import Any, Protocol

from chaoshelius.stack import api_models as api
from chaoshelius.stack import selectors
from chaoshelius.stack.config import StackConfig
from chaoshelius.topology import PathMode


class StackOperations(Protocol):
    # -- reading -----------------------------------------------------------------------------
    def status(self) -> api.Status: ...

    def list_pods(self, selector: selectors.Selector) -> list[api.Pod]: ...

    def list_faults(self) -> list[api.Fault]: ...

    def list_events(self) -> list[dict[str, Any]]: ...

    def metrics(self) -> bytes: ...

    # -- pods --------------------------------------------------------------------------------
    def kill_pods(self, selector: selectors.Selector, count: int | None) -> list[str]: ...

    # -- faults (each TTL-bound; the undo returns the faults it removed) ---------------------
    def scale(self, app_name: str, replicas: int, ttl_seconds: float) -> api.Fault: ...

    def restore_scale(self, app_name: str) -> list[api.Fault]: ...

    def drain_zone(self, zone: str, ttl_seconds: float) -> api.Fault: ...

    def uncordon_zone(self, zone: str) -> list[api.Fault]: ...

    def cut_path(
        self, edge: str, mode: PathMode, latency_ms: int, ttl_seconds: float
    ) -> api.Fault: ...

    def restore_path(self, edge: str) -> list[api.Fault]: ...

    def remove_fault(self, fault_id: str) -> list[api.Fault]: ...

    # -- the stack itself --------------------------------------------------------------------
    async def reconfigure(self, config: StackConfig) -> None: ...

    def request_stop(self) -> None: ...
