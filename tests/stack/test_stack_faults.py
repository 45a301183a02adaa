"""Fault verbs of the stack without starting it: each goes through the fault book and a
verb of the supervisor or a path proxy, and its undo puts things back (no sockets, no pods)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from chaoshelius.stack.config import StackConfig
from chaoshelius.stack.daemon import Stack
from chaoshelius.stack.errors import InvalidRequest, NotFound
from chaoshelius.stack.ports import StackPorts
from chaoshelius.stack.state import StackPaths, read_state
from chaoshelius.topology import EDGE_RECO_MLFLOW, App, PathMode


def _with_stack(tmp_path: Path, check: Callable[[Stack], None]) -> None:
    async def scenario() -> None:
        paths = StackPaths(tmp_path)
        paths.create()
        stack = Stack(paths, StackPorts(31900), StackConfig())
        try:
            check(stack)
        finally:
            await stack.supervisor._http.aclose()

    asyncio.run(scenario())


def test_drain_and_scale_go_through_supervisor_verbs_and_undo(tmp_path: Path) -> None:
    def check(stack: Stack) -> None:
        drain = stack.drain_zone("zone-a", 60)
        scale = stack.scale(App.RECO, 1, 60)
        assert stack.supervisor.drained == {"zone-a"}
        assert stack.supervisor.desired(App.RECO) == 0  # not enabled before boot
        assert stack.supervisor.scale == {App.RECO: 1}
        assert [f.id for f in stack.list_faults()] == [drain.id, scale.id]
        assert [f.id for f in stack.uncordon_zone("zone-a")] == [drain.id]
        assert stack.uncordon_zone("zone-a") == []  # idempotent
        assert [f.id for f in stack.remove_fault(scale.id)] == [scale.id]
        assert stack.supervisor.drained == set() and stack.supervisor.scale == {}
        assert stack.list_faults() == []

    _with_stack(tmp_path, check)


def test_a_path_cut_sets_the_proxy_fault_and_its_restore_clears_it(tmp_path: Path) -> None:
    def check(stack: Stack) -> None:
        proxy = stack.paths_proxies[EDGE_RECO_MLFLOW]
        fault = stack.cut_path(EDGE_RECO_MLFLOW, PathMode.LATENCY, 50, 60)
        assert fault.params == {"mode": "latency", "latency_ms": 50}
        assert proxy.fault.mode is PathMode.LATENCY
        state = read_state(stack.paths.state_file)
        assert state is not None and state.base_port == 31900
        assert [f.id for f in stack.restore_path(EDGE_RECO_MLFLOW)] == [fault.id]
        assert proxy.fault.status == "normal"
        with pytest.raises(InvalidRequest):
            stack.cut_path(EDGE_RECO_MLFLOW, PathMode.LATENCY, 0, 60)
        with pytest.raises(NotFound):
            stack.cut_path("nowhere", PathMode.RESET, 0, 60)
        with pytest.raises(NotFound):
            stack.drain_zone("zone-z", 60)
        with pytest.raises(NotFound):
            stack.restore_scale("grafana")

    _with_stack(tmp_path, check)
