"""`up` / `down` as functions (the CLI and the tests call these).

`up` starts the supervisor daemon detached, then waits for its phase in `stack.json` to turn
`ready`. `down` asks it to stop, waits, and then sweeps whatever a dead supervisor left behind
(pod process groups, Prometheus, PostgreSQL) so no process survives. A pid read from
`stack.json` is signalled only if it is still the process the stack recorded (same start time
and command line): a stale file must not make `down` kill someone else's process.
"""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaoshelius.stack import cpus as cpu_set
from chaoshelius.stack.client import ControlClient
from chaoshelius.stack.config import StackConfig, shipped_name_of
from chaoshelius.stack.errors import ControlUnreachable, ProcessStartError, StackError
from chaoshelius.stack.ports import StackPorts
from chaoshelius.stack.postgres import PostgresServer
from chaoshelius.stack.procs import (
    ProcessIdentity,
    ensure_port_free,
    group_alive,
    group_is_ours,
    is_same_process,
    kill_group,
    pid_alive,
    wait_until,
)
from chaoshelius.stack.state import (
    StackPaths,
    StackState,
    open_private_log,
    read_state,
    write_private,
)

UP_TIMEOUT_SECONDS = 300.0


class ProfileMismatchError(StackError):
    """A stack is already up in this state directory with another profile."""


@dataclass(frozen=True)
class UpResult:
    already_running: bool
    seconds: float
    state: dict[str, Any]  # stack.json as JSON (`StackState.model_dump(mode="json")`)
    profile_swapped: bool = False  # a running stack took the new profile in place


def running_state(paths: StackPaths) -> StackState | None:
    """stack.json if its supervisor is alive (the same process it recorded), else None."""
    state = read_state(paths.state_file)
    if state is None:
        return None
    pid = state.pids.supervisor
    return state if pid is not None and _recorded_alive(state, pid) else None


def _identity(state: StackState, pid: int) -> ProcessIdentity | None:
    """The identity stack.json recorded for `pid` (None if it recorded none)."""
    recorded = state.identities.get(str(pid))
    try:
        return ProcessIdentity.from_json(pid, recorded) if recorded else None
    except (KeyError, TypeError, ValueError):
        return None


def _recorded_alive(state: StackState, pid: int) -> bool:
    """True if `pid` runs and is the process stack.json recorded under it. A pid with no
    recorded identity is not trusted (a file from an older version, or not ours)."""
    identity = _identity(state, pid)
    return identity is not None and is_same_process(identity)


def up(
    state_dir: Path,
    base_port: int,
    config: StackConfig,
    restart: bool = False,
    timeout: float = UP_TIMEOUT_SECONDS,
    cpus: frozenset[int] | None = None,
) -> UpResult:
    """Start the stack (or find it running) and wait until it is ready (`timeout`, plus the
    profile's boot allowance: MLflow's readiness delay). With `cpus`, the stack runs on those
    CPUs only (chaoshelius.stack.cpus); a running stack pinned otherwise counts as another
    stack (restarted with `restart`)."""
    paths = StackPaths(state_dir.resolve())
    started = time.monotonic()
    timeout += config.boot_allowance_seconds
    state = running_state(paths)
    if state is not None:
        wanted = config.model_dump(mode="json")
        supervisor = state.pids.supervisor
        if supervisor is None:  # running_state checked it
            raise StackError(f"{paths.state_file}: a running stack without a supervisor pid")
        elsewhere = (
            cpus is not None and cpu_set.can_pin() and cpu_set.affinity_of(supervisor) != cpus
        )
        if state.profile != wanted or state.base_port != base_port or elsewhere:
            if not restart:
                raise ProfileMismatchError(
                    f"a stack is already up in {paths.root} with profile "
                    f"{state.profile.get('name')!r} on base port "
                    f"{state.base_port}"
                    + (f", not on CPUs {cpu_set.describe(cpus)}" if cpus and elsewhere else "")
                    + "; run `chaoshelius stack down` first or pass --restart"
                )
            if (
                state.base_port == base_port
                and not elsewhere
                and _swap_profile(paths, state, config, timeout)
            ):
                ready = _wait_ready(paths, supervisor, started + timeout)
                return UpResult(
                    True, time.monotonic() - started, _json(ready), profile_swapped=True
                )
            down(state_dir)
        else:
            ready = _wait_ready(paths, supervisor, started + timeout)
            return UpResult(True, time.monotonic() - started, _json(ready))
    else:
        _sweep(paths)  # a supervisor that died leaves pods behind: clean them first
    for port, what in StackPorts(base_port).listeners().items():
        ensure_port_free(port, what)
    paths.create()
    write_private(paths.profile_file, json.dumps(config.model_dump(mode="json"), indent=1))
    with open_private_log(paths.supervisor_log) as log:
        process = subprocess.Popen(  # noqa: S603  argv list, no shell: our own daemon module
            [
                sys.executable, "-m", "chaoshelius.stack.daemon",
                "--state-dir", str(paths.root),
                "--base-port", str(base_port),
                "--profile", str(paths.profile_file),
                *(["--cpus", cpu_set.describe(cpus)] if cpus else []),
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
        ready = _wait_ready(paths, process.pid, started + timeout, process)
    except StackError:
        down(state_dir)
        raise
    return UpResult(False, time.monotonic() - started, _json(ready))


def _json(state: StackState) -> dict[str, Any]:
    return state.model_dump(mode="json")


def _swap_profile(
    paths: StackPaths, state: StackState, config: StackConfig, timeout: float
) -> bool:
    """Ask the running stack to swap to `config` in place; False if it needs a restart.

    Only a shipped profile (by name) can be applied in place: the API never takes a profile's
    content. Any other profile file restarts the stack with it.
    """
    running = StackConfig.model_validate(state.profile)
    name = shipped_name_of(config)
    if name is None or not running.swappable_to(config):
        return False
    client = ControlClient.for_state_dir(paths.root, timeout=timeout)
    try:
        client.set_profile(name)
    except ControlUnreachable:
        return False
    except StackError as exc:
        raise StackError(f"the stack refused the profile change: {exc}") from exc
    finally:
        client.close()
    return True


def _wait_ready(
    paths: StackPaths, pid: int, deadline: float, process: subprocess.Popen[bytes] | None = None
) -> StackState:
    last_error = None
    while time.monotonic() < deadline:
        state = read_state(paths.state_file)
        if state is not None and state.pids.supervisor == pid:
            if state.phase == "ready":
                return state
            if state.phase == "failed":
                last_error = state.error
        alive = process.poll() is None if process is not None else _still_ours(state, pid)
        if not alive:
            raise ProcessStartError(
                f"the stack failed to start: {last_error or 'supervisor exited'}; see "
                f"{paths.supervisor_log}{_tail(paths.supervisor_log)}"
            )
        time.sleep(0.2)
    raise ProcessStartError(f"the stack was not ready in time; see {paths.logs}")


def _still_ours(state: StackState | None, pid: int) -> bool:
    """While waiting on a supervisor we did not start: alive and the recorded process."""
    if state is None or _identity(state, pid) is None:
        return pid_alive(pid)  # not recorded yet: the daemon is still writing its first state
    return _recorded_alive(state, pid)


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
    pid = state.pids.supervisor
    if pid is not None and _recorded_alive(state, pid):
        client = ControlClient.for_state_dir(paths.root, timeout=5)
        try:
            client.shutdown()
        except StackError:
            kill_group(pid, signal.SIGTERM)  # the supervisor leads its own session
        finally:
            client.close()
        if not wait_until(functools.partial(_not_alive, state, pid), timeout, 0.1):
            kill_group(pid)
    _sweep(paths, state)
    return True


def _not_alive(state: StackState, pid: int) -> bool:
    return not _recorded_alive(state, pid)


def _sweep(paths: StackPaths, state: StackState | None = None) -> bool:
    """Kill what a dead supervisor left: pod groups, Prometheus; stop PostgreSQL."""
    state = state or read_state(paths.state_file)
    found = False
    if state is not None:
        groups = [*state.pod_process_groups, state.pids.prometheus]
        for pgid in groups:
            if pgid is not None and group_is_ours(pgid, _identity(state, pgid)):
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
