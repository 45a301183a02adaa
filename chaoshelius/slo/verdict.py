"""The shape every judging probe returns, so one tolerance form fits all of them.

```json
"tolerance": {"type": "jsonpath", "path": "$.ok", "expect": true}
```

`ok` is True only when the check held on real data; no data is `ok: false`.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chaoslib.exceptions import ActivityFailed

from chaoshelius import windows
from chaoshelius.config import HarnessConfig
from chaoshelius.windows import Window

if TYPE_CHECKING:
    from chaoshelius.drivers import Driver
    from chaoshelius.slo.prometheus import ProbePrometheus

__all__ = [
    "OK_TOLERANCE",
    "Judged",
    "fmt_ms",
    "fmt_number",
    "gated",
    "now",
    "verdict",
    "window_json",
    "window_or_verdict",
    "window_probe",
]

Result = dict[str, Any]
# arguments that select the window or carry Chaos Toolkit's context, not thresholds
_NOT_THRESHOLDS = frozenset({"window_id", "kind", "target", "configuration", "secrets"})


def now() -> float:
    """The judging clock, epoch seconds: "now" for open windows and "still ... now" checks.
    One seam, so tests can judge a recorded history as of the end of the recording."""
    return time.time()


def fmt_number(value: float | None, digits: int = 4) -> str:
    """A measured value in a verdict's description ("no data" for none)."""
    return "no data" if value is None else f"{value:.{digits}g}"


def fmt_ms(seconds: float | None) -> str:
    """A duration in seconds, in milliseconds, in a verdict's description."""
    return "no data" if seconds is None else f"{seconds * 1000:.0f} ms"


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


@dataclass
class Judged:
    """What a window probe judges: the fault's window, with the configuration it runs under."""

    window: Window
    config: HarnessConfig
    threshold: dict[str, Any]

    @property
    def start(self) -> float:
        return self.window.started_at

    @property
    def end(self) -> float:
        """The fault's end (now while it is still active), at least 1 s after its start."""
        end = self.window.ended_at if self.window.ended_at is not None else now()
        return max(end, self.window.started_at + 1.0)

    def recovery_end(self, recovery_seconds: float | None) -> float:
        """Where a judgement of the fault **and its recovery** ends: the fault's end plus
        `recovery_seconds` (None: until the load stopped), never later than now. A fault that
        never ended is judged until now."""
        current = now()
        if self.window.ended_at is None:
            return current
        if recovery_seconds is None:
            stopped = windows.load_stopped_at()
            end = stopped if stopped is not None and stopped > self.end else current
        else:
            end = self.end + recovery_seconds
        return max(self.end, min(end, current))

    @functools.cached_property
    def prometheus(self) -> ProbePrometheus:
        from chaoshelius.slo.prometheus import client

        return client(self.config)

    @functools.cached_property
    def driver(self) -> Driver:
        from chaoshelius.drivers import get_driver

        return get_driver(self.config)

    def result(
        self, ok: bool, value: float | int | None, description: str, query: str = "", **extra: Any
    ) -> Result:
        """A verdict on this window, with the probe's thresholds."""
        return verdict(
            ok, value, self.threshold, description, query, window_json(self.window), **extra
        )


def window_probe(
    kind: str | None = None, target_from: str | None = None
) -> Callable[[Callable[..., Result]], Callable[..., Result]]:
    """Say once what every window probe opens with: find the fault window it judges, or return
    the verdict without judging (vacuous before any fault; a failure when the fault recorded no
    window). The probe's own first parameter receives a `Judged`; Chaos Toolkit sees (and binds
    experiment arguments to) the remaining parameters, so `chaos discover` and
    `ensure_experiment_is_valid` show the real signature.

    The window is selected by the probe's `window_id`/`kind`/`target` arguments; a probe with a
    fixed kind passes `kind=`, and `target_from=` names the argument that is the target (e.g.
    the app of a `pod-kill` window). The thresholds a verdict reports are the probe's other
    arguments.
    """

    def decorate(func: Callable[..., Result]) -> Callable[..., Result]:
        signature = inspect.signature(func)
        first, *rest = signature.parameters.values()
        public = signature.replace(parameters=rest)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Result:
            bound = public.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = bound.arguments
            threshold = {k: v for k, v in arguments.items() if k not in _NOT_THRESHOLDS}
            found = window_or_verdict(
                arguments.get("window_id"),
                kind or arguments.get("kind"),
                arguments.get(target_from) if target_from else arguments.get("target"),
                threshold,
            )
            if isinstance(found, dict):
                return found
            config = HarnessConfig.from_chaos(arguments.get("configuration"))
            judged = Judged(found, config, threshold)
            return func(judged, *bound.args, **bound.kwargs)

        wrapper.__signature__ = public  # type: ignore[attr-defined]
        wrapper.__annotations__ = {k: v for k, v in func.__annotations__.items() if k != first.name}
        return wrapper

    return decorate
