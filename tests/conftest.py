"""What every test shares.

The layout mirrors the code: tests/<package>/ tests chaoshelius/<package>/ (tests/core the
top-level modules), and tests/support/ holds the one set of helpers (waiting, free ports, small
HTTP servers) and the stand-ins for what cannot run here (a Kubernetes API server, the stack's
control API, an MLflow registry, a simulated cluster's metrics).

Each test starts a new "run" (no fault phase, no windows), and `fake_stack` / `configuration`
give the activities a fake control API to talk to.

One real local stack per test session (base port 27000, state in a pytest tmp dir), shared by
tests/stack (the stack itself) and tests/experiments (interrupted chaos runs).

Tests share it, so each one must leave it as it found it: the `stack` fixture undoes every
fault and waits until all pods are ready again after each test, whatever the test did.
Teardown stops the stack with `lifecycle.down` and fails if any of its processes survive.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.fake_control import FakeStack, serve
from support.stack import StackHandle, busy_ports, stack_pids, survivors

from chaoshelius import windows
from chaoshelius.stack import auth, lifecycle
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


@pytest.fixture(autouse=True)
def _fresh_windows() -> Iterator[None]:
    """Each test is a new 'run': no fault phase, no windows."""
    windows.reset()
    yield
    windows.reset()


@pytest.fixture
def fake_stack() -> Iterator[tuple[FakeStack, str]]:
    stack = FakeStack()
    for app in ("helius-reco", "mlflow"):
        for zone in ("zone-a", "zone-b", "zone-c"):
            stack.add_pod(app, zone)
    server, url = serve(stack)
    yield stack, url
    server.shutdown()
    server.server_close()


@pytest.fixture
def configuration(
    fake_stack: tuple[FakeStack, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """The driver finds the fake's token where it finds a real stack's: the state dir."""
    monkeypatch.delenv(auth.TOKEN_ENV, raising=False)
    stack_dir = tmp_path / "stack"
    stack_dir.mkdir()
    auth.token_file(stack_dir).write_text(fake_stack[0].token + "\n")
    return {
        "helius_control_url": fake_stack[1],
        "helius_stack_dir": str(stack_dir),
        "helius_run_dir": str(tmp_path / "run"),
        "helius_http_timeout_seconds": 2,
    }
