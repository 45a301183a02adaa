"""Before each run: wait until the target is steady (the previous run's recovery settled)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from chaoshelius.controls import steady_gate
from chaoshelius.promapi import PromAPIError, PrometheusAPI
from chaoshelius.slo.steady import fallback_reason
from chaoshelius.stack import api_models as api
from chaoshelius.stack.client import ControlClient
from chaoshelius.stack.errors import StackError
from chaoshelius.suite.interrupts import Interrupts
from chaoshelius.topology import NAMESPACE, App

__all__ = [
    "STEADY_NOTE_SECONDS",
    "STEADY_TIMEOUT_SECONDS",
    "await_steady",
    "declares_steady_gate",
    "poll_steady",
    "unsteady_reason",
]

STEADY_TIMEOUT_SECONDS = 120.0  # before each run: the previous one's recovery to settle
STEADY_NOTE_SECONDS = 10.0  # a longer wait is printed with what it waited for


def declares_steady_gate(experiment: Path) -> bool:
    try:
        declared = json.loads(experiment.read_text(encoding="utf-8")).get("controls") or []
    except (OSError, ValueError, AttributeError):
        return False
    return any(
        isinstance(c, dict) and (c.get("provider") or {}).get("module") == steady_gate.MODULE
        for c in declared
    )


def await_steady(
    state_dir: Path,
    state: dict[str, Any],
    timeout: float,
    interrupts: Interrupts,
    *,
    alerts: bool = True,
) -> tuple[str | None, str]:
    """Wait until the stack is steady: every pod ready, no fault active, every recommender
    seen by Prometheus out of fallback, no alert firing or pending (unless `alerts` is off: the
    experiment's steady gate checks them when its fault is due), and a prediction through the
    service answering 200. Returns (None when steady else why not, the reasons it waited for)."""
    ports = state["ports"]
    predict = f"http://127.0.0.1:{ports['reco_service']}/predict"
    prom = PrometheusAPI(f"http://127.0.0.1:{ports['prometheus']}", 5.0)
    control = ControlClient.for_state_dir(state_dir, timeout=5)
    with control, httpx.Client(timeout=5) as client:
        return poll_steady(
            lambda: unsteady_reason(control, client, predict, prom, alerts), timeout, interrupts
        )


def poll_steady(
    reason: Callable[[], str | None], timeout: float, interrupts: Interrupts
) -> tuple[str | None, str]:
    """Ask `reason` every second until it says None (steady) or `timeout` passes. Returns
    (None when steady else why not, the reasons it waited for)."""
    deadline = time.monotonic() + timeout
    why = "not checked"
    seen: list[str] = []
    while not interrupts.fired:
        why = reason() or ""
        if not why:
            return None, "; ".join(seen)
        if why not in seen:
            seen.append(why)
        if time.monotonic() >= deadline:
            return why, "; ".join(seen)
        time.sleep(1.0)
    return why or "interrupted", "; ".join(seen)


def unsteady_reason(
    control: ControlClient,
    client: httpx.Client,
    predict: str,
    prom: PrometheusAPI,
    alerts: bool = True,
) -> str | None:
    try:
        status = api.Status.model_validate(control.status())
        not_ready = sorted(p.name for p in status.pods if not p.ready)
        if not_ready:
            return f"pods not ready: {not_ready}"
        if status.faults:
            return f"faults still active: {[f.id for f in status.faults]}"
        reco = [p.name for p in status.pods if p.app == App.RECO.value]
        out_of_fallback = fallback_reason(prom, len(reco), reco)
        if out_of_fallback:
            return out_of_fallback
        firing = steady_gate.unsteady_reason(prom, NAMESPACE) if alerts else None
        if firing:
            return firing
        answer = client.post(predict, json={"user_id": "steady-check", "k": 3})
        if answer.status_code != 200:
            return f"a prediction through the service answered HTTP {answer.status_code}"
    except (StackError, httpx.HTTPError, ValueError, KeyError, PromAPIError) as exc:
        return f"the stack did not answer ({type(exc).__name__}: {exc})"
    return None
