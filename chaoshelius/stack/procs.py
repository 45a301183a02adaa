"""Process helpers: process groups, port checks, waiting with deadlines."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from chaoshelius.stack.errors import PortInUseError
from chaoshelius.stack.state import open_private_log

LOOPBACK = "127.0.0.1"


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True if nothing listens on host:port (we can bind it without SO_REUSEADDR tricks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def ensure_port_free(port: int, what: str, host: str = LOOPBACK) -> None:
    """Raise `PortInUseError` naming the port and its role if it is taken."""
    if not port_is_free(port, host):
        raise PortInUseError(port, what)


def port_accepts(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """True if a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def spawn_group(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in a new session (its own process group), stdout+stderr to `log_path`
    (created 0600)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with open_private_log(log_path) as log:
        return subprocess.Popen(  # noqa: S603  argv list, no shell: pod commands the stack builds
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )


def kill_group(pid: int, sig: signal.Signals = signal.SIGKILL) -> bool:
    """Send `sig` to the process group led by `pid`; False if it is already gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    return True


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists (zombies count as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def group_alive(pgid: int) -> bool:
    """True if any live (non-zombie) process is left in process group `pgid`."""
    return bool(group_members(pgid))


def group_members(pgid: int) -> list[int]:
    """Pids of the live processes whose process group is `pgid`."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def stop_group(pid: int, grace: float = 5.0) -> None:
    """SIGTERM the group, wait up to `grace` seconds, then SIGKILL whatever is left."""
    if not kill_group(pid, signal.SIGTERM):
        return
    if not wait_until(lambda: not group_alive(pid), grace, 0.05):
        kill_group(pid, signal.SIGKILL)
        wait_until(lambda: not group_alive(pid), 5.0, 0.05)


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return 0


def descendants(pid: int) -> list[int]:
    """`pid` and all its live descendants (walks /proc once)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        if pid_alive(current):
            found.append(current)
        todo.extend(children.get(current, []))
    return found


@dataclass(frozen=True)
class ProcessIdentity:
    """What tells one process from a later one that got the same pid: start time + argv."""

    pid: int
    create_time: float
    cmdline: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"create_time": self.create_time, "cmdline": list(self.cmdline)}

    @classmethod
    def from_json(cls, pid: int, data: Mapping[str, Any]) -> ProcessIdentity:
        return cls(pid, float(data["create_time"]), tuple(str(a) for a in data["cmdline"]))


def identify(pid: int) -> ProcessIdentity | None:
    """The identity of the live process `pid`, None if it is gone (or a zombie)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return ProcessIdentity(pid, process.create_time(), tuple(process.cmdline()))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_same_process(identity: ProcessIdentity) -> bool:
    """True if the process recorded as `identity` is still the one running under its pid
    (a pid read from a stale stack.json may belong to someone else's process by now)."""
    return identify(identity.pid) == identity


def group_is_ours(pgid: int, leader: ProcessIdentity | None) -> bool:
    """True if signalling process group `pgid` reaches only what the stack started.

    A live leader must match its recorded identity. A dead leader with live members is still
    our group: Linux does not hand out a pid that is in use as a process group id.
    """
    if not group_alive(pgid):
        return False
    if not pid_alive(pgid):
        return True
    return leader is not None and is_same_process(leader)
