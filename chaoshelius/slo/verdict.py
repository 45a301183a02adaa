"""The shape every judging probe returns, so one tolerance form fits all of them.

```json
"tolerance": {"type": "jsonpath", "path": "$.ok", "expect": true}
```

`ok` is True only when the check held on real data; no data is `ok: false`.
"""

from __future__ import annotations

from typing import Any

from chaoslib.exceptions import ActivityFailed

from chaoshelius import windows
from chaoshelius.windows import Window

__all__ = ["OK_TOLERANCE", "gated", "verdict", "window_json", "window_or_verdict"]

OK_TOLERANCE: dict[str, Any] = {"type": "jsonpath", "path": "$.ok", "expect": True}


def verdict(
    ok: bool,
    value: float | int | None,
    threshold: Any,
    description: str,
    query: str = "",
    window: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A probe result: `{"ok", "value", "threshold", "query", "description", "window", ...}`."""
    return {
        "ok": bool(ok),
        "value": value,
        "threshold": threshold,
        "query": query,
        "description": description,
        "window": window,
        **extra,
    }


def window_or_verdict(
    window_id: str | None, kind: str | None, target: str | None, threshold: Any
) -> Window | dict[str, Any]:
    """The fault window a probe must judge, or the verdict to return without judging.

    Before any fault action of this run was called (the before-method hypothesis) the check
    holds vacuously. After one was called, a missing window is a failure: the fault did not
    happen, so nothing can be claimed about surviving it.
    """
    if not windows.fault_phase_started():
        return verdict(
            True,
            None,
            threshold,
            "before the method: no fault injected yet in this run, holds vacuously",
            vacuous=True,
        )
    window = windows.find_window(window_id=window_id, kind=kind, target=target)
    if window is None:
        wanted = ", ".join(
            f"{k}={v}" for k, v in (("id", window_id), ("kind", kind), ("target", target)) if v
        )
        return verdict(
            False,
            None,
            threshold,
            f"no fault window ({wanted or 'any'}) was recorded in this run: the fault action "
            "failed or never ran, so the fault cannot be judged",
        )
    return window


def window_json(window: Window) -> dict[str, Any]:
    """The window as probes report it."""
    return {
        "id": window.id,
        "kind": window.kind,
        "target": window.target,
        "started_at": window.started_at,
        "ended_at": window.ended_at,
    }


def gated(result: dict[str, Any]) -> dict[str, Any]:
    """Raise instead of returning `ok: false` before any fault of this run (the before-method
    hypothesis): Chaos Toolkit exits 0 when a before-method tolerance fails, but 1 when a
    probe raises, and a run that started from a broken system proved nothing.
    After the method the result is returned as is (the tolerance then deviates the run).
    """
    if not result["ok"] and not windows.fault_phase_started():
        raise ActivityFailed(
            f"steady state not met before any fault was injected: {result['description']}"
        )
    return result
