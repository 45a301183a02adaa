"""One real local stack per test session (base port 27000, state in a pytest tmp dir), shared by
tests/stack (the stack itself) and tests/experiments (interrupted chaos runs).

Tests share it, so each one must leave it as it found it: the `stack` fixture undoes every
fault and waits until all pods are ready again after each test, whatever the test did.
Teardown stops the stack with `lifecycle.down` and fails if any of its processes survive.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
from stack_helpers import StackHandle, busy_ports, stack_pids, survivors

from chaoshelius.stack import lifecycle
from chaoshelius.stack.client import ControlClient
from chaoshelius.stack.config import StackConfig
from chaoshelius.stack.ports import StackPorts
from chaoshelius.stack.state import StackPaths, read_state

BASE_PORT = int(os.environ.get("HELIUS_TEST_STACK_BASE_PORT", "27000"))


@pytest.fixture(scope="session")
def session_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    state_dir = tmp_path_factory.mktemp("helius-stack")
    ports = StackPorts(BASE_PORT)
    result = lifecycle.up(state_dir, BASE_PORT, StackConfig())
    assert not result.already_running
    print(f"\nlocal stack ready in {result.seconds:.1f} s (state {state_dir})")
    control = ControlClient.for_state_dir(state_dir, timeout=15)
    http = httpx.Client()
    handle = StackHandle(state_dir, ports, control, http)
    try:
        yield handle
    finally:
        http.close()
        control.close()
        state = read_state(StackPaths(state_dir).state_file)
        pids = stack_pids(state) if state else set()
        assert lifecycle.down(state_dir)
        assert pids, "the stack had no process to account for"
        assert survivors(pids, state_dir) == []
        assert busy_ports(ports) == []
        assert not lifecycle.down(state_dir), "a second down found something still running"


@pytest.fixture
def stack(session_stack: StackHandle) -> Iterator[StackHandle]:
    """The session's stack, healthy before the test and made healthy again after it."""
    session_stack.wait_fully_ready()
    yield session_stack
    session_stack.undo_all_faults()
    session_stack.wait_fully_ready()
