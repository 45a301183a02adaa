"""Process plumbing of the benchmarks: servers in their own process groups, killed whole on
exit, on an error and on Ctrl-C/SIGTERM/SIGHUP; free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from chaoshelius.stack.procs import kill_group

CLEANUP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class BenchError(Exception):
    """The benchmark could not run or its targets misbehaved; the message says why."""


class ProcessGroups:
    """Processes started in their own sessions; `kill_all` ends each whole group."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(
        self, argv: Sequence[str], *, env: dict[str, str], log: Path | None, cwd: Path
    ) -> subprocess.Popen[bytes]:
        out = log.open("wb") if log else subprocess.PIPE
        try:
            process = subprocess.Popen(  # noqa: S603  argv list, no shell: the benchmark's own servers
                list(argv),
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if log else subprocess.PIPE,
                start_new_session=True,
            )
        finally:
            if log:
                out.close()  # type: ignore[union-attr]
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        """SIGTERM the group, then SIGKILL what is left of it (`mlflow models serve` runs
        uvicorn in a child of the group leader). The leader is reaped only after both signals,
        so its pid, which names the group, cannot have been reused by someone else's process."""
        if process.returncode is None:
            _signal_group(process.pid, signal.SIGTERM)
            _wait_unreaped(process.pid, grace)
            _signal_group(process.pid, signal.SIGKILL)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                print(f"warning: process {process.pid} did not exit", file=sys.stderr)
        if process in self.processes:
            self.processes.remove(process)

    def kill_all(self) -> None:
        for process in list(self.processes):
            self.kill(process)


def exited(process: subprocess.Popen[bytes]) -> bool:
    """Whether the process ended, without reaping it (see `ProcessGroups.kill`)."""
    return process.returncode is not None or _wait_unreaped(process.pid, 0.0)


def _wait_unreaped(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:  # already reaped
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        kill_group(pgid, sig)
    except PermissionError:  # the pid named a group that is no longer ours
        pass


@contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt, so one `finally` cleans up. SIGINT is
    set too because a shell starts background jobs with it ignored."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in CLEANUP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def free_ports(start: int, count: int, stop: int) -> list[int]:
    ports: list[int] = []
    for port in range(start, stop):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise BenchError(f"fewer than {count} free ports in {start}..{stop - 1}")
