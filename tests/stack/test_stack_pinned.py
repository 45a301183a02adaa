"""A stack pinned to CPUs (`lifecycle.up(cpus=...)`, `stack up --cpus`): every process and
thread of the real stack (the supervisor, PostgreSQL under its own user, Prometheus, HAProxy,
the prefork parent and the pod it forked) runs on those CPUs only. A small stack on its own
base (one recommender pod, no MLflow) keeps it quick."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.stack import busy_ports, stack_pids, survivors

from chaoshelius.stack import cpus, lifecycle
from chaoshelius.stack.config import AppPlacement, StackConfig
from chaoshelius.stack.ports import StackPorts
from chaoshelius.stack.state import StackPaths, read_state

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not cpus.can_pin(), reason="sched_setaffinity is Linux-only"),
]

PINNED_BASE = int(os.environ.get("HELIUS_TEST_STACK_BASE_PORT", "27000")) + 1500
SMALL = StackConfig(
    name="small",
    mlflow=AppPlacement(replicas=0),
    reco=AppPlacement(replicas=1),
    bootstrap_model=False,
)


def _threads(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return []


def test_every_process_and_thread_of_a_pinned_stack_runs_on_its_cpus(tmp_path: Path) -> None:
    state_dir = tmp_path / "stack"
    mine = frozenset({cpus.available()[-1]})
    ports = StackPorts(PINNED_BASE)
    pids: set[int] = set()
    try:
        result = lifecycle.up(state_dir, PINNED_BASE, SMALL, cpus=mine)
        assert not result.already_running
        state = read_state(StackPaths(state_dir).state_file)
        assert state is not None
        pids = stack_pids(state)
        assert len(pids) >= 5, pids  # supervisor, PostgreSQL's, Prometheus, HAProxy, a pod...
        elsewhere = {
            (pid, tid): cpus.affinity_of(tid)
            for pid in pids
            for tid in _threads(pid)
            if cpus.affinity_of(tid) not in (mine, None)
        }
        assert elsewhere == {}
        # the same stack asked for on other CPUs is another stack: refused, or restarted
        if len(cpus.available()) > 1:
            other = frozenset({cpus.available()[0]})
            with pytest.raises(lifecycle.ProfileMismatchError, match="not on CPUs"):
                lifecycle.up(state_dir, PINNED_BASE, SMALL, cpus=other)
        # not asking for CPUs takes the running stack as it is
        again = lifecycle.up(state_dir, PINNED_BASE, SMALL)
        assert again.already_running
    finally:
        lifecycle.down(state_dir)
    assert survivors(pids, state_dir) == []
    assert busy_ports(ports) == []
