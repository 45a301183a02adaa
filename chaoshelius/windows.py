"""Fault windows: when each fault of this run started and ended.

Fault actions open a window when they inject (`open_window`) and restore actions close it
(`close_windows`); the after-method hypothesis then judges that window in Prometheus. The
record lives in two places:

- in this process (Chaos Toolkit runs every Python activity of an experiment in the `chaos`
  process), so probes see exactly the windows of *this* run, never a stale file of an earlier
  run in the same run directory;
- in `<helius_run_dir>/windows.json`, a JSON list of `{"id", "kind", "target", "started_at",
  "ended_at", "details"}` (epoch seconds), for the report builder. The first window of a process
  replaces whatever an earlier run left there.

A window probe must tell "before the method" (no fault yet: it holds vacuously) from "after the
method, but the fault never recorded a window" (a failure). `mark_fault_phase()` is called at
the very start of every fault action, before it can fail, so the second case is detected.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Window",
    "await_timeouts",
    "close_windows",
    "fault_phase_started",
    "load_stopped",
    "load_stopped_at",
    "find_window",
    "mark_fault_phase",
    "note_open_windows",
    "open_window",
    "pods_before",
    "ready_before",
    "record_await_timeout",
    "reset",
    "restarts_before",
    "windows",
]

WINDOWS_FILE = "windows.json"


@dataclass
class Window:
    """One fault's time window, epoch seconds. `ended_at` is None while the fault is active."""

    id: str
    kind: str
    target: str
    started_at: float
    ended_at: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # when the undo began: the dependency may be back anywhere from here to `ended_at` (a slow
    # API call, a busy runner), so "held until back" is judged against this, "recovered
    # within N s" against `ended_at`
    lifting_at: float | None = None

    def as_output(self) -> dict[str, Any]:
        """What a fault action returns under `"window"` (the journal keeps it)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "target": self.target,
            "started_at": self.started_at,
        }

    def as_close_output(self) -> dict[str, Any]:
        """What a restore action returns under `"window"`."""
        lifting = {} if self.lifting_at is None else {"lifting_at": self.lifting_at}
        return {"id": self.id, "ended_at": self.ended_at, **lifting}


@dataclass
class _RunState:
    fault_phase: bool = False
    windows: list[Window] = field(default_factory=list)
    load_started_at: float | None = None
    load_stopped_at: float | None = None
    await_timeouts: list[tuple[str, str]] = field(default_factory=list)  # (app, why)


_LOCK = threading.Lock()
_STATE = _RunState()


def reset() -> None:
    """Forget this process's windows (tests; a new run in the same process)."""
    global _STATE
    with _LOCK:
        _STATE = _RunState()


def mark_fault_phase() -> None:
    """Record that the method reached a fault action (call first thing in every fault action)."""
    with _LOCK:
        _STATE.fault_phase = True


def fault_phase_started() -> bool:
    """True once any fault action of this run has been called, whether it succeeded or not."""
    with _LOCK:
        return _STATE.fault_phase


def load_started(at: float | None = None) -> None:
    """Record when this run's load started (the first start counts): the client probes read
    the answers counted from here, never a previous run's (its pods, its model, its faults)."""
    with _LOCK:
        if _STATE.load_started_at is None:
            _STATE.load_started_at = time.time() if at is None else at


def load_started_at() -> float | None:
    """When this run's load started, if it did."""
    with _LOCK:
        return _STATE.load_started_at


def load_stopped(at: float | None = None) -> None:
    """Record when this run's load stopped (the first stop counts): client probes judge the
    fault's recovery up to there."""
    with _LOCK:
        if _STATE.load_stopped_at is None:
            _STATE.load_stopped_at = time.time() if at is None else at


def load_stopped_at() -> float | None:
    """When this run's load stopped, if it did."""
    with _LOCK:
        return _STATE.load_stopped_at


def record_await_timeout(app: str, why: str) -> None:
    """Record that an await for `app`'s pods timed out in this run. Chaos Toolkit only logs a
    failed method action, so the recovery and readiness probes read this and fail: a recovery
    that was awaited and did not come is a deviation, never a warning."""
    with _LOCK:
        _STATE.await_timeouts.append((app, why))


def await_timeouts(app: str) -> list[str]:
    """Why each await for `app` timed out in this run (oldest first; empty: none did)."""
    with _LOCK:
        return [why for target, why in _STATE.await_timeouts if target == app]


def windows() -> list[Window]:
    """A copy of this run's windows, oldest first."""
    with _LOCK:
        return [Window(**asdict(w)) for w in _STATE.windows]


def open_window(
    run_dir: Path,
    kind: str,
    target: str,
    window_id: str | None = None,
    details: dict[str, Any] | None = None,
    started_at: float | None = None,
) -> Window:
    """Start a window now (or at `started_at`) and persist it."""
    window = Window(
        id=window_id or f"{kind}-{uuid.uuid4().hex[:8]}",
        kind=kind,
        target=target,
        started_at=time.time() if started_at is None else started_at,
        details=dict(details or {}),
    )
    with _LOCK:
        _STATE.fault_phase = True
        _STATE.windows.append(window)
        _persist(run_dir)
    return Window(**asdict(window))


def close_windows(
    run_dir: Path,
    kind: str | None = None,
    target: str | None = None,
    window_id: str | None = None,
    ended_at: float | None = None,
    lifting_at: float | None = None,
) -> list[Window]:
    """End the open windows that match; already-closed windows keep their first end (idempotent).
    `lifting_at`: when the undo that ends them began (see `Window.lifting_at`)."""
    stamp = time.time() if ended_at is None else ended_at
    closed: list[Window] = []
    with _LOCK:
        for window in _STATE.windows:
            if window.ended_at is not None or not _matches(window, kind, target, window_id):
                continue
            window.ended_at = stamp
            if lifting_at is not None:
                window.lifting_at = min(lifting_at, stamp)
            closed.append(Window(**asdict(window)))
        if closed:
            _persist(run_dir)
    return closed


def note_open_windows(run_dir: Path, key: str, value: dict[str, Any]) -> int:
    """Append `value` to `details[key]` of every open window (evidence an action gathered
    during the fault, e.g. a promotion and its artifact's digest) and persist; returns how many
    windows got it."""
    noted = 0
    with _LOCK:
        for window in _STATE.windows:
            if window.ended_at is None:
                window.details.setdefault(key, []).append(dict(value))
                noted += 1
        if noted:
            _persist(run_dir)
    return noted


def find_window(
    window_id: str | None = None, kind: str | None = None, target: str | None = None
) -> Window | None:
    """The most recent window of this run matching all the given filters, or None."""
    with _LOCK:
        for window in reversed(_STATE.windows):
            if _matches(window, kind, target, window_id):
                return Window(**asdict(window))
    return None


def _matches(window: Window, kind: str | None, target: str | None, window_id: str | None) -> bool:
    return (
        (kind is None or window.kind == kind)
        and (target is None or window.target == target)
        and (window_id is None or window.id == window_id)
    )


def _persist(run_dir: Path) -> None:
    """Write this run's windows to `<run_dir>/windows.json` atomically (lock held)."""
    path = Path(run_dir) / WINDOWS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{WINDOWS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps([asdict(w) for w in _STATE.windows], indent=2) + "\n")
    os.replace(tmp, path)


def ready_before(window: Window, app: str) -> int:
    """Ready pods of `app` when the fault started, as its action recorded them (at least 1)."""
    counts = window.details.get("ready_before", {})
    return max(1, int(counts.get(app, 1)))


def pods_before(window: Window, app: str) -> list[str]:
    """Names of the ready pods of `app` when the fault started (empty if not recorded)."""
    names = window.details.get("pods_before", {}).get(app, [])
    return [str(n) for n in names]


def restarts_before(window: Window, app: str) -> dict[str, int]:
    """Restart count of each ready pod of `app` when the fault started (pod name -> count), as
    its action recorded them; empty if not recorded (a window written before restart counts
    were recorded: probes then judge names only)."""
    counts = window.details.get("restarts_before", {}).get(app, {})
    return {str(name): int(n) for name, n in counts.items()}
