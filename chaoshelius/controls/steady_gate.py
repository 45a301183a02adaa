"""Chaos Toolkit control: no fault goes into a stack that is not steady.

Right before the method's first fault (the first action that is not the load's), the gate asks
Prometheus whether the stack is steady: no helius alert firing or pending (a pending alert's
`for:` clock is already running) and no recommender in fallback.
It waits for that up to `timeout_seconds`; if the stack is still not steady then, it

1. writes `<helius_run_dir>/not_steady.json` (`reason`, `waited_seconds`), which the report
   turns into the verdict **not judged** (a fault injected into a degraded stack proves
   nothing either way);
2. interrupts `chaos run` (InterruptExecution: the run ends `interrupted`, no fault was
   injected, the rollbacks play with the `always` strategy).

Why here and not only before the run: the check holds at the moment the fault lands, on both
targets, and the wait overlaps the load's warm-up. The previous fault's alerts (MLflowDegraded
counts refresh failures over 30 s) clear during the next run's warm-up instead of in a wait in
front of it, so the suite no longer waits for alerts before starting a run that declares this
gate (it still waits for every pod ready, no fault active, predictions answering).

It also closes a hole in Chaos Toolkit: when a probe of the steady-state hypothesis *before*
the method returns a value outside its tolerance, `chaos run` skips the method and exits 0
(status "completed"): a CI job would pass a run that never injected anything. So after that
hypothesis, if a probe that ran fine was out of its tolerance, the gate writes
`not_steady.json` as above (naming the probes and what they returned) and interrupts the run,
which then exits 1 and is reported **not judged**. That is what lets a plain tolerance (for
instance chaostoolkit-prometheus's instant query with a jsonpath tolerance) stand in the
hypothesis beside the harness's own probes, which raise before any fault instead.

Declared in each experiment of the catalogue:

    {"name": "helius-steady-gate",
     "provider": {"type": "python", "module": "chaoshelius.controls.steady_gate",
                  "arguments": {"timeout_seconds": 60}}}
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, NoReturn

from chaoslib.exceptions import InterruptExecution
from chaoslib.types import Activity, Configuration, Experiment, Hypothesis, Secrets

from chaoshelius import windows
from chaoshelius.config import HarnessConfig
from chaoshelius.promapi import PromAPIError, PrometheusAPI
from chaoshelius.slo.steady import fallback_reason

__all__ = [
    "MODULE",
    "NOT_STEADY_FILE",
    "after_hypothesis_control",
    "after_method_control",
    "before_activity_control",
    "before_method_control",
    "configure_control",
    "unsteady_reason",
]

MODULE = __name__
NOT_STEADY_FILE = "not_steady.json"
LOAD_MODULE_PREFIX = "chaoshelius.load"
logger = logging.getLogger("chaostoolkit")


class _State:
    timeout_seconds: float = 60.0
    poll_seconds: float = 1.0
    config: HarnessConfig | None = None
    armed = False  # between the method's start and its first fault


def configure_control(
    timeout_seconds: float = 60.0,
    poll_seconds: float = 1.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
    **kwargs: Any,
) -> None:
    """Read the arguments and the configuration."""
    _State.timeout_seconds = max(0.0, float(timeout_seconds))
    _State.poll_seconds = max(0.1, float(poll_seconds))
    _State.config = HarnessConfig.from_chaos(configuration)
    _State.armed = False


def before_method_control(context: Experiment, **kwargs: Any) -> None:
    _State.armed = True


def after_method_control(context: Experiment, **kwargs: Any) -> None:
    _State.armed = False  # rollbacks are never gated


def before_activity_control(
    context: Activity,
    configuration: Configuration = None,
    experiment: Experiment | None = None,
    **kwargs: Any,
) -> None:
    """Before the method's first fault: wait for a steady stack, or refuse to inject. A dry
    run (`chaos run --dry ...`) is never judged, so it is not gated either."""
    if not _State.armed or not is_fault(context) or (experiment or {}).get("dry"):
        return
    _State.armed = False  # the first fault only: later ones are part of the experiment
    config = _State.config or HarnessConfig.from_chaos(configuration)
    prom = PrometheusAPI(config.prometheus_base_url, config.helius_http_timeout_seconds)
    started = time.monotonic()
    seen: list[str] = []
    while True:
        why = unsteady_reason(prom, config.kube_namespace)
        waited = time.monotonic() - started
        if why is None:
            if seen:
                logger.info(f"Steady gate: steady after {waited:.0f} s (waited for: {seen})")
            return
        if why not in seen:
            seen.append(why)
        if waited >= _State.timeout_seconds:
            break
        time.sleep(_State.poll_seconds)
    reason = f"not steady when '{context.get('name')}' was due, after {waited:.0f} s: {why}"
    _refuse(config, reason, waited)


def after_hypothesis_control(
    context: Hypothesis,
    state: dict[str, Any] | None = None,
    experiment: Experiment | None = None,
    configuration: Configuration = None,
    **kwargs: Any,
) -> None:
    """Before any fault: a hypothesis probe out of its tolerance interrupts the run (exit 1,
    not judged) instead of letting `chaos run` exit 0 without running the method."""
    if not state or state.get("steady_state_met") is not False or windows.fault_phase_started():
        return
    if (experiment or {}).get("dry"):
        return
    missed = [
        f"'{run.get('activity', {}).get('name')}' returned {_excerpt(run.get('output'))}"
        for run in state.get("probes", [])
        if run.get("status") == "succeeded" and run.get("tolerance_met") is False
    ]
    if not missed:  # a probe raised: the run is "failed" already and exits 1 by itself
        return
    config = _State.config or HarnessConfig.from_chaos(configuration)
    reason = "not steady before the method: out of tolerance " + "; ".join(missed)
    _refuse(config, reason, 0.0)


def _excerpt(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, default=str, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _refuse(config: HarnessConfig, reason: str, waited: float) -> NoReturn:
    """Write why no fault goes in (`not_steady.json`, read by the report) and interrupt."""
    run_dir: Path = config.helius_run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / NOT_STEADY_FILE).write_text(
        json.dumps({"reason": reason, "waited_seconds": round(waited, 1)}, indent=2),
        encoding="utf-8",
    )
    logger.critical(f"Steady gate: {reason}; no fault injected")
    raise InterruptExecution(f"steady gate: {reason}")


def is_fault(activity: Activity) -> bool:
    """An action of the method that is not the load's own (start_load, stop_load)."""
    provider = activity.get("provider") or {}
    module = str(provider.get("module") or "")
    return activity.get("type") == "action" and not module.startswith(LOAD_MODULE_PREFIX)


def unsteady_reason(prom: PrometheusAPI, namespace: str) -> str | None:
    """Why the stack is not steady as Prometheus sees it now, or None: a helius alert firing
    or pending (this namespace's, or one without a namespace such as an `absent()` alert) or
    a recommender reporting fallback."""
    try:
        alerts = prom.instant(f'ALERTS{{alertstate=~"firing|pending", namespace=~"{namespace}|"}}')
        for state in ("firing", "pending"):
            names = sorted(
                {s.labels.get("alertname", "?") for s in alerts
                 if s.labels.get("alertstate", "firing") == state}
            )  # fmt: skip
            if names:
                # a pending alert's `for:` clock is running: the next fault would raise it early
                return f"alerts {state}: {names}"
        return fallback_reason(prom)
    except PromAPIError as exc:
        return f"Prometheus did not answer ({exc})"
