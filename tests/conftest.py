"""What every test shares.

The layout mirrors the code: tests/<package>/ tests chaoshelius/<package>/ (tests/core the
top-level modules), and tests/support/ holds the one set of helpers (waiting, free ports, small
HTTP servers) and the stand-ins for what cannot run here (a Kubernetes API server, the stack's
control API, an MLflow registry, a simulated cluster's metrics).

Each test starts a new "run" (no fault phase, no windows), and `fake_stack` / `configuration`
give the activities a fake control API to talk to.

One real local stack per test session (base port 27000, state in a pytest tmp dir), shared by
tests/stack (the stack itself) and tests/experiments (interrupted chaos runs). Under `pytest -n
N` (pytest-xdist, as `nox -s tests` runs) the modules that use it run on one worker, which boots
it once; every other module is a unit of its own (support/xdist_units.py).

Tests share it, so each one must leave it as it found it: the `stack` fixture undoes every
fault and waits until all pods are ready again after each test, whatever the test did.
Teardown stops the stack with `lifecycle.down` and fails if any of its processes survive.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
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


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("xdist"):  # units of work under -n: support/xdist_units.py
        from support.xdist_units import XdistUnits

        config.pluginmanager.register(XdistUnits(), "helius-xdist-units")


STACK_STOP = pytest.StashKey[Callable[[], None]]()
LAST_STACK_USER = pytest.StashKey[str | None]()


@pytest.fixture(scope="session")
def session_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StackHandle]:
    state_dir = tmp_path_factory.mktemp("helius-stack")
    ports = StackPorts(BASE_PORT)
    result = lifecycle.up(state_dir, BASE_PORT, StackConfig())
    assert not result.already_running
    print(f"\nlocal stack ready in {result.seconds:.1f} s (state {state_dir})")
    control = ControlClient.for_state_dir(state_dir, timeout=15)
    http = httpx.Client()
    handle = StackHandle(state_dir, ports, control, http)
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if stopped:
            return
        stopped = True
        http.close()
        control.close()
        state = read_state(StackPaths(state_dir).state_file)
        pids = stack_pids(state) if state else set()
        assert lifecycle.down(state_dir)
        assert pids, "the stack had no process to account for"
        assert survivors(pids, state_dir) == []
        assert busy_ports(ports) == []
        assert not lifecycle.down(state_dir), "a second down found something still running"

    request.config.stash[STACK_STOP] = stop
    try:
        yield handle
    finally:
        stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Stop the session stack right after the last test that uses it (whose `stack` fixture
    made it healthy again), not at the end of the session: idle, it still takes about half a
    core (scrapes, health checks, MLflow's workers) from every test after it. The last user in
    the collection is the last one run: serially, and under xdist, where every user is in one
    unit (support/xdist_units.py) run in collection order."""
    yield
    stop = item.config.stash.get(STACK_STOP, None)
    if stop is not None and item.nodeid == _last_stack_user(item.session):
        stop()


def _last_stack_user(session: pytest.Session) -> str | None:
    if LAST_STACK_USER not in session.config.stash:
        users = [
            i.nodeid for i in session.items if "session_stack" in getattr(i, "fixturenames", ())
        ]
        session.config.stash[LAST_STACK_USER] = users[-1] if users else None
    return session.config.stash[LAST_STACK_USER]


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
