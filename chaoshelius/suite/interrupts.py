"""SIGTERM / SIGINT during a suite: each running `chaos` gets SIGTERM once (it plays its
rollbacks), then up to CHAOS_STOP_GRACE_SECONDS to finish before SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from chaoshelius.stack.procs import kill_group

__all__ = ["CHAOS_STOP_GRACE_SECONDS", "Interrupts", "wait_for_chaos"]

CHAOS_STOP_GRACE_SECONDS = 120.0  # rollbacks + after-hypothesis queries, then SIGKILL


class Interrupts:
    """SIGTERM/SIGINT: forward SIGTERM to every running `chaos` once (one per lane), remember
    it happened."""

    def __init__(self) -> None:
        self.fired = False
        self._children: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._previous: dict[int, Any] = {}

    def add(self, child: subprocess.Popen[bytes]) -> None:
        """A `chaos` run started: an interruption now reaches it (at once if one already came)."""
        with self._lock:
            self._children.add(child)
            fired = self.fired
        if fired:
            _terminate(child)

    def discard(self, child: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._children.discard(child)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.fired = True
        with self._lock:
            children = list(self._children)
        for child in children:
            _terminate(child)

    def __enter__(self) -> Interrupts:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _terminate(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)


def wait_for_chaos(
    process: subprocess.Popen[bytes],
    interrupts: Interrupts,
    tick: Callable[[], None] | None = None,
) -> None:
    """Wait for `chaos` to end, calling `tick` (the progress lines) meanwhile; once interrupted,
    give it CHAOS_STOP_GRACE_SECONDS for its rollbacks, then SIGKILL its process group."""
    while process.poll() is None:
        if tick is not None:
            tick()
        if interrupts.fired:
            try:
                process.wait(CHAOS_STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                kill_group(process.pid, signal.SIGKILL)
                process.wait()
            return
        time.sleep(0.2)
