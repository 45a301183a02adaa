"""Chaos Toolkit control: stop conditions on what the clients see.

While the method runs, a background thread asks Prometheus every `interval_seconds` for the
client success ratio and p99 latency over the last `window_seconds` (the load generator's own
metrics, `helius_client_requests_total{outcome=...}` and
`helius_client_request_latency_seconds`). When either passes its limit on `consecutive`
checks in a row, the safeguard:

1. writes `<helius_run_dir>/safeguard.json` (`name`, `tripped_at`, `reason`, `check`, `value`,
   `limit`), which the report turns into the verdict **aborted**;
2. interrupts `chaos run` gracefully (chaoslib.exit.exit_gracefully: the method stops where it
   is, the run ends `interrupted`, and the rollbacks play with the `always` strategy).

Like AWS FIS stop conditions or chaostoolkit-addons' safeguards, it protects users, it does
not judge the experiment: the hypothesis does. No traffic or an unreachable Prometheus never
trips it (a warning is logged), since no data says nothing about users being hurt.

Declared in each experiment (limits are arguments; these are the shipped ones):

    {"name": "helius-safeguards",
     "provider": {"type": "python", "module": "chaoshelius.controls.safeguards",
                  "arguments": {"min_success_ratio": 0.5, "max_p99_seconds": 5.0}}}

`HELIUS_SAFEGUARDS=off` in the environment disables it (the suite does so for negative
controls, whose fragile variants are meant to hurt the clients until the hypothesis sees it).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from chaoslib.exit import exit_gracefully
from chaoslib.types import Activity, Configuration, Experiment, Secrets

from chaoshelius.config import HarnessConfig
from chaoshelius.promapi import PromAPIError, PrometheusAPI
from chaoshelius.topology import CLIENT_LATENCY, CLIENT_REQUESTS

__all__ = [
    "SAFEGUARD_FILE",
    "Limits",
    "Trip",
    "after_method_control",
    "before_method_control",
    "check_once",
    "cleanup_control",
    "configure_control",
]

SAFEGUARD_FILE = "safeguard.json"
DISABLE_ENV = "HELIUS_SAFEGUARDS"
NAME = "client-harm"
logger = logging.getLogger("chaostoolkit")

_CLIENT = CLIENT_REQUESTS
_LATENCY = f"{CLIENT_LATENCY}_bucket"


@dataclass(frozen=True)
class Limits:
    min_success_ratio: float | None = 0.5
    max_p99_seconds: float | None = 5.0
    window_seconds: int = 10
    interval_seconds: float = 2.0
    consecutive: int = 2
    min_requests: int = 5  # fewer requests in the window: no verdict on the ratio


@dataclass(frozen=True)
class Trip:
    """One limit passed, as written to `safeguard.json`."""

    name: str
    tripped_at: float
    check: str  # success_ratio / p99_seconds
    value: float
    limit: float
    reason: str


class _State:
    limits = Limits()
    config: HarnessConfig | None = None
    thread: threading.Thread | None = None
    stop = threading.Event()
    tripped: Trip | None = None


def configure_control(
    min_success_ratio: float | None = 0.5,
    max_p99_seconds: float | None = 5.0,
    window_seconds: int = 10,
    interval_seconds: float = 2.0,
    consecutive: int = 2,
    min_requests: int = 5,
    configuration: Configuration = None,
    secrets: Secrets = None,
    **kwargs: Any,
) -> None:
    """Read the limits (the control's `arguments`) and the configuration."""
    _State.limits = Limits(
        min_success_ratio, max_p99_seconds, int(window_seconds), float(interval_seconds),
        max(1, int(consecutive)), int(min_requests),
    )  # fmt: skip
    _State.config = HarnessConfig.from_chaos(configuration)
    _State.tripped = None


def before_method_control(
    context: Experiment, configuration: Configuration = None, **kwargs: Any
) -> None:
    """Start watching the clients when the method (the faults) starts."""
    if os.environ.get(DISABLE_ENV, "").lower() in ("0", "off", "false", "no"):
        logger.info(f"Safeguards off ({DISABLE_ENV})")
        return
    config = _State.config or HarnessConfig.from_chaos(configuration)
    _State.stop = threading.Event()
    _State.thread = threading.Thread(
        target=_watch, args=(config, _State.limits, _State.stop), name="helius-safeguards",
        daemon=True,
    )  # fmt: skip
    _State.thread.start()
    limits = _State.limits
    logger.info(
        f"Safeguards on: abort when client success < {limits.min_success_ratio} or p99 > "
        f"{limits.max_p99_seconds} s over {limits.window_seconds} s, "
        f"{limits.consecutive} checks in a row"
    )


def after_method_control(context: Activity | Experiment, **kwargs: Any) -> None:
    """The method is over: stop watching (the hypothesis judges from here)."""
    _stop()


def cleanup_control() -> None:
    _stop()


def check_once(prom: PrometheusAPI, limits: Limits) -> tuple[str, float, float] | None:
    """One look at the clients: the (check, value, limit) that is passed, else None.
    Raises PromAPIError when Prometheus cannot answer."""
    w = f"{limits.window_seconds}s"
    if limits.min_success_ratio is not None:
        total = prom.instant_value(f"sum(increase({_CLIENT}[{w}]))")
        if total is not None and total >= limits.min_requests:
            ok = prom.instant_value(f'sum(increase({_CLIENT}{{outcome="success"}}[{w}]))')
            ratio = (ok or 0.0) / total
            if ratio < limits.min_success_ratio:
                return "success_ratio", ratio, limits.min_success_ratio
    if limits.max_p99_seconds is not None:
        p99 = prom.instant_value(f"histogram_quantile(0.99, sum by (le) (rate({_LATENCY}[{w}])))")
        if p99 is not None and p99 > limits.max_p99_seconds:
            return "p99_seconds", p99, limits.max_p99_seconds
    return None


def _watch(config: HarnessConfig, limits: Limits, stop: threading.Event) -> None:
    prom = PrometheusAPI(config.prometheus_base_url, config.helius_http_timeout_seconds)
    strikes = 0
    while not stop.wait(limits.interval_seconds):
        try:
            passed = check_once(prom, limits)
        except PromAPIError as exc:
            logger.warning(f"Safeguards cannot read Prometheus (not tripping): {exc}")
            continue
        strikes = strikes + 1 if passed else 0
        if passed and strikes >= limits.consecutive:
            _trip(config.helius_run_dir, *passed, limits)
            return


def _trip(run_dir: Path, check: str, value: float, limit: float, limits: Limits) -> None:
    if check == "success_ratio":
        reason = (
            f"client success {value:.1%} over the last {limits.window_seconds} s is below the "
            f"limit {limit:.0%} ({limits.consecutive} checks in a row)"
        )
    else:
        reason = (
            f"client p99 {value * 1000:.0f} ms over the last {limits.window_seconds} s is above "
            f"the limit {limit * 1000:.0f} ms ({limits.consecutive} checks in a row)"
        )
    trip = Trip(NAME, time.time(), check, value, limit, reason)
    _State.tripped = trip
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / SAFEGUARD_FILE).write_text(json.dumps(asdict(trip), indent=2), encoding="utf-8")
    logger.critical(f"Safeguard '{NAME}' tripped: {reason}; aborting the method, rolling back")
    exit_gracefully()


def _stop() -> None:
    _State.stop.set()
    thread = _State.thread
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout=5)
    _State.thread = None
