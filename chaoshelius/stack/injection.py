"""Fault injection and the TTL reaper: every fault goes through here, and back out.

A fault is recorded in the `FaultBook` (chaoshelius/stack/faults.py) and applied through a
verb of the thing it acts on: a path proxy (`set_fault` / `clear_fault`) or the supervisor
(`drain_zone`, `set_scale`, ...). The reaper reverts expired faults, so they outlive whoever
injected them but never their TTL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from chaoshelius.stack import api_models as api
from chaoshelius.stack.errors import InvalidRequest, NotFound
from chaoshelius.stack.events import EventLog
from chaoshelius.stack.faults import Fault, FaultBook
from chaoshelius.stack.proxy import ProxyFault, TcpProxy
from chaoshelius.stack.supervisor import Supervisor
from chaoshelius.topology import ZONES, App, FaultKind, PathMode

log = logging.getLogger("chaoshelius.stack")

REAP_INTERVAL_SECONDS = 0.1
SCALABLE_APPS = (App.MLFLOW, App.RECO)


class FaultInjector:
    """Injects, removes and reaps the stack's TTL-bound faults."""

    def __init__(
        self,
        supervisor: Supervisor,
        path_proxies: Mapping[str, TcpProxy],
        events: EventLog,
        on_change: Callable[[], None],
    ) -> None:
        self.book = FaultBook()
        self.seen: set[tuple[str, str]] = set()  # (kind, target) ever injected, for /metrics
        self.supervisor = supervisor
        self.path_proxies = path_proxies
        self.events = events
        self.on_change = on_change

    # -- paths -----------------------------------------------------------------------------
    def cut_path(self, edge: str, mode: PathMode, latency_ms: int, ttl_seconds: float) -> api.Fault:
        proxy = self._edge(edge)
        if mode == PathMode.LATENCY and latency_ms <= 0:
            raise InvalidRequest("mode latency needs latency_ms > 0")
        params: dict[str, Any] = {"mode": str(mode)}
        if mode == PathMode.LATENCY:
            params["latency_ms"] = latency_ms
        fault = self._add(FaultKind.PATH, edge, params, ttl_seconds)
        proxy.set_fault(ProxyFault(PathMode(mode), latency_ms))
        self.on_change()
        return fault

    def restore_path(self, edge: str) -> list[api.Fault]:
        proxy = self._edge(edge)
        removed = self._remove(FaultKind.PATH, edge)
        proxy.clear_fault()
        return removed

    # -- zones -----------------------------------------------------------------------------
    def drain_zone(self, zone: str, ttl_seconds: float) -> api.Fault:
        self._zone(zone)
        fault = self._add(FaultKind.DRAIN, zone, {}, ttl_seconds)
        self.supervisor.drain_zone(zone)
        return fault

    def uncordon_zone(self, zone: str) -> list[api.Fault]:
        self._zone(zone)
        removed = self._remove(FaultKind.DRAIN, zone)
        self.supervisor.uncordon_zone(zone)
        return removed

    # -- scale -----------------------------------------------------------------------------
    def scale(self, app_name: str, replicas: int, ttl_seconds: float) -> api.Fault:
        app = self._app(app_name)
        fault = self._add(FaultKind.SCALE, app, {"replicas": replicas}, ttl_seconds)
        self.supervisor.set_scale(app, replicas)
        return fault

    def restore_scale(self, app_name: str) -> list[api.Fault]:
        app = self._app(app_name)
        removed = self._remove(FaultKind.SCALE, app)
        self.supervisor.clear_scale(app)
        return removed

    # -- any -------------------------------------------------------------------------------
    def remove_fault(self, fault_id: str) -> list[api.Fault]:
        for fault in self.book.active():
            if fault.id == fault_id:
                return self._remove(fault.kind, fault.target)
        return []

    def list_faults(self) -> list[api.Fault]:
        return [api.Fault.model_validate(fault.to_json()) for fault in self.book.active()]

    def active(self) -> list[Fault]:
        return self.book.active()

    async def reap(self) -> None:
        """Revert expired faults every 0.1 s. An error reverting one fault (a full disk while
        rewriting stack.json...) is logged and the loop goes on: the reaper is the dead-man's
        switch, and a dead one would leave every later fault in place."""
        while True:
            for fault in self.book.pop_expired(time.time()):
                try:
                    self._revert(fault)
                    self.events.record(
                        "fault expired", fault=fault.id, kind=str(fault.kind), target=fault.target
                    )
                except Exception:
                    log.exception("reverting expired fault %s failed; the reaper goes on", fault.id)
            await asyncio.sleep(REAP_INTERVAL_SECONDS)

    # -- internals -------------------------------------------------------------------------
    def _revert(self, fault: Fault) -> None:
        if fault.kind is FaultKind.PATH:
            self.path_proxies[fault.target].clear_fault()
            self.supervisor.poke()
        elif fault.kind is FaultKind.DRAIN:
            self.supervisor.uncordon_zone(fault.target)
        else:
            self.supervisor.clear_scale(App(fault.target))
        self.on_change()

    def _add(
        self, kind: FaultKind, target: str, params: dict[str, Any], ttl_seconds: float
    ) -> api.Fault:
        fault, replaced = self.book.add(kind, target, params, ttl_seconds, time.time())
        self.seen.add((str(kind), target))
        self.events.record(
            "fault injected",
            fault=fault.id,
            kind=str(kind),
            target=target,
            ttl_seconds=ttl_seconds,
            replaced=replaced.id if replaced else None,
            **params,
        )
        return api.Fault.model_validate(fault.to_json())

    def _remove(self, kind: FaultKind, target: str) -> list[api.Fault]:
        fault = self.book.remove(kind, target)
        if fault is None:
            return []
        self._revert(fault)
        self.events.record("fault removed", fault=fault.id, kind=str(kind), target=target)
        return [api.Fault.model_validate(fault.to_json())]

    def _edge(self, edge: str) -> TcpProxy:
        if edge not in self.path_proxies:
            raise NotFound(f"unknown path {edge!r}; known: {sorted(self.path_proxies)}")
        return self.path_proxies[edge]

    @staticmethod
    def _zone(zone: str) -> None:
        if zone not in ZONES:
            raise NotFound(f"unknown zone {zone!r}; known: {list(ZONES)}")

    @staticmethod
    def _app(name: str) -> App:
        if name not in SCALABLE_APPS:
            raise NotFound(f"unknown app {name!r}; known: {[str(a) for a in SCALABLE_APPS]}")
        return App(name)
