"""`up` / `down` as functions (the CLI and the tests call these).

`up` starts the supervisor daemon detached, then waits for its phase in `stack.json` to turn
`ready`. `down` asks it to stop, waits, and then sweeps whatever a dead supervisor left behind
(pod process groups, Prometheus, PostgreSQL) so no process survives.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from chaoshelius.stack.config import StackConfig
from chaoshelius.stack.errors import ProcessStartError, StackError
from chaoshelius.stack.ports import StackPorts
from chaoshelius.stack.postgres import PostgresServer
from chaoshelius.stack.procs import ensure_port_free, group_alive, kill_group, pid_alive, wait_until
from chaoshelius.stack.state import StackPaths, read_state

UP_TIMEOUT_SECONDS = 300.0


class ProfileMismatchError(StackError):
    """A stack is already up in this state directory with another profile."""


@dataclass(frozen=True)
class UpResult:
    already_running: bool
    seconds: float
    state: dict[str, Any]
    profile_swapped: bool = False  # a running stack took the new profile in place


def running_state(paths: StackPaths) -> dict[str, Any] | None:
    """stack.json if its supervisor is alive, else None."""
    state = read_state(paths.state_file)
    if state is None:
        return None
    pid = state.get("pids", {}).get("supervisor")
    return state if isinstance(pid, int) and pid_alive(pid) else None


def up(
    state_dir: Path,
    base_port: int,
    config: StackConfig,
    restart: bool = False,
    timeout: float = UP_TIMEOUT_SECONDS,
) -> UpResult:
    """Start the stack (or find it running) and wait until it is ready."""
    paths = StackPaths(state_dir.resolve())
    started = time.monotonic()
    state = running_state(paths)
    if state is not None:
        wanted = config.model_dump(mode="json")
        if state.get("profile") != wanted or state.get("base_port") != base_port:
            if not restart:
                raise ProfileMismatchError(
                    f"a stack is already up in {paths.root} with profile "
                    f"{state.get('profile', {}).get('name')!r} on base port "
                    f"{state.get('base_port')}; run `chaoshelius stack down` first or pass "
                    f"--restart"
                )
            if state.get("base_port") == base_port and _swap_profile(state, config, timeout):
                state = _wait_ready(paths, state["pids"]["supervisor"], started + timeout)
                return UpResult(True, time.monotonic() - started, state, profile_swapped=True)
            down(state_dir)
        else:
            state = _wait_ready(paths, state["pids"]["supervisor"], started + timeout)
            return UpResult(True, time.monotonic() - started, state)
    else:
        _sweep(paths)  # a supervisor that died leaves pods behind: clean them first
    for port, what in StackPorts(base_port).listeners().items():
        ensure_port_free(port, what)
    paths.create()
    paths.profile_file.write_text(json.dumps(config.model_dump(mode="json"), indent=1))
    with paths.supervisor_log.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603  argv list, no shell: our own daemon module
            [
                sys.executable, "-m", "chaoshelius.stack.daemon",
                "--state-dir", str(paths.root),
                "--base-port", str(base_port),
                "--profile", str(paths.profile_file),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=paths.root,
        )  # fmt: skip
    # the supervisor outlives this call: reap it when it exits (no zombie left in a long-lived
    # caller, no "subprocess is still running" ResourceWarning when `process` is collected)
    threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()
    try:
        state = _wait_ready(paths, process.pid, started + timeout, process)
    except StackError:
        down(state_dir)
        raise
    return UpResult(False, time.monotonic() - started, state)


def _swap_profile(state: dict[str, Any], config: StackConfig, timeout: float) -> bool:
    """Ask the running stack to swap to `config` in place; False if it needs a restart."""
    running = StackConfig.model_validate(state.get("profile") or {})
    if not running.differs_only_in_recommender(config):
        return False
    url = f"http://127.0.0.1:{state['ports']['control']}/profile"
    try:
        response = httpx.put(url, json=config.model_dump(mode="json"), timeout=timeout)
    except httpx.HTTPError:
        return False
    if response.status_code != 200:
        raise StackError(f"the stack refused the profile change: {response.text}")
    return True


def _wait_ready(
    paths: StackPaths, pid: int, deadline: float, process: subprocess.Popen[bytes] | None = None
) -> dict[str, Any]:
    last_error = None
    while time.monotonic() < deadline:
        state = read_state(paths.state_file)
        if state is not None and state.get("pids", {}).get("supervisor") == pid:
            if state.get("phase") == "ready":
                return state
            if state.get("phase") == "failed":
                last_error = state.get("error")
        alive = process.poll() is None if process is not None else pid_alive(pid)
        if not alive:
            raise ProcessStartError(
                f"the stack failed to start: {last_error or 'supervisor exited'}; see "
                f"{paths.supervisor_log}{_tail(paths.supervisor_log)}"
            )
        time.sleep(0.2)
    raise ProcessStartError(f"the stack was not ready in time; see {paths.logs}")


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except FileNotFoundError:
        return ""
    return "\n" + "\n".join(text)


def down(state_dir: Path, timeout: float = 60.0) -> bool:
    """Stop the stack; True if something was running. Idempotent."""
    paths = StackPaths(state_dir.resolve())
    state = read_state(paths.state_file)
    if state is None:
        return _sweep(paths)
    pid = state.get("pids", {}).get("supervisor")
    if isinstance(pid, int) and pid_alive(pid):
        url = f"http://127.0.0.1:{state['ports']['control']}/shutdown"
        try:
            httpx.post(url, timeout=5)
        except httpx.HTTPError:
            os.kill(pid, signal.SIGTERM)
        if not wait_until(lambda: not pid_alive(pid), timeout, 0.1):
            kill_group(pid)
    _sweep(paths, state)
    return True


def _sweep(paths: StackPaths, state: dict[str, Any] | None = None) -> bool:
    """Kill what a dead supervisor left: pod groups, Prometheus; stop PostgreSQL."""
    state = state or read_state(paths.state_file)
    found = False
    if state is not None:
        pids = state.get("pids", {})
        groups = [*state.get("pod_process_groups", []), pids.get("prometheus")]
        for pgid in groups:
            if isinstance(pgid, int) and group_alive(pgid):
                found = True
                kill_group(pgid)
                wait_until(functools.partial(_group_gone, pgid), 5.0, 0.05)
    pg = PostgresServer(paths.postgres_data, port=0)
    if pg.is_running():
        found = True
        pg.stop()
    paths.state_file.unlink(missing_ok=True)
    return found


def _group_gone(pgid: int) -> bool:
    return not group_alive(pgid)
