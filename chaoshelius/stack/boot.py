"""Boot steps of the stack: Prometheus, the model bootstrap over MLflow REST, readiness waits.

Each step is a function of what it needs (paths, ports, the event log), so `Stack` only
orders them (chaoshelius/stack/daemon.py).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

from chaoshelius import registry
from chaoshelius.promapi import PromAPIError, PrometheusAPI
from chaoshelius.slo.steady import OUT_OF_FALLBACK_QUERY
from chaoshelius.stack import auth, prometheus
from chaoshelius.stack.config import AlertRulePatch
from chaoshelius.stack.errors import ProcessStartError, StackError
from chaoshelius.stack.events import EventLog
from chaoshelius.stack.ports import StackPorts
from chaoshelius.stack.procs import LOOPBACK, spawn_group, stop_group
from chaoshelius.stack.state import StackPaths
from chaoshelius.stack.supervisor import Pod
from chaoshelius.topology import MODEL_ALIAS, MODEL_NAME

BOOT_TIMEOUT_SECONDS = 240.0


async def until(
    predicate: Callable[[], bool],
    deadline: float,
    what: str,
    stopped: asyncio.Event,
    logs_dir: Path,
    blocking: bool = False,
) -> None:
    """Poll until `predicate()`; `blocking` predicates run in a thread. Raises when `stopped`
    is set or at `deadline`."""
    while not (await asyncio.to_thread(predicate) if blocking else predicate()):
        if stopped.is_set():
            raise StackError("stopped while starting")
        if time.monotonic() > deadline:
            raise ProcessStartError(
                f"{what} within {BOOT_TIMEOUT_SECONDS:.0f} s; see the logs in {logs_dir}"
            )
        await asyncio.sleep(0.2)


class PrometheusProcess:
    """The stack's Prometheus: its config, its process group, its readiness."""

    def __init__(
        self,
        paths: StackPaths,
        ports: StackPorts,
        rules_patch: Mapping[str, AlertRulePatch] | None = None,
    ) -> None:
        self.paths = paths
        self.ports = ports
        self.rules_patch = dict(rules_patch or {})
        self.pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = prometheus.find_binary()
        prometheus.write_targets(self.paths.targets, [])
        self._write_config()
        self.paths.prometheus_data.mkdir(parents=True, exist_ok=True)
        process = spawn_group(
            prometheus.argv(
                binary,
                self.paths.prometheus_config,
                self.paths.prometheus_data,
                self.ports.prometheus,
            ),
            self.paths.logs / "prometheus.log",
        )
        self.pid = process.pid
        self._process = process

    def ready(self) -> bool:
        """True once /-/ready answers 200 (blocking); raises if the process exited."""
        if self._process is None:
            raise RuntimeError("PrometheusProcess.ready() before start()")
        if self._process.poll() is not None:
            raise ProcessStartError(
                f"Prometheus exited ({self._process.returncode}); see "
                f"{self.paths.logs / 'prometheus.log'}"
            )
        try:
            url = f"http://{LOOPBACK}:{self.ports.prometheus}/-/ready"
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def _write_config(self) -> None:
        rules = None
        if self.rules_patch:  # a profile's alerting mistake: a patched copy of the rules
            rules = self.paths.prometheus_rules
            text = prometheus.patched_rules(prometheus.rules_file(), self.rules_patch)
            rules.parent.mkdir(parents=True, exist_ok=True)
            rules.write_text(text, encoding="utf-8")
        prometheus.write_config(
            self.paths.prometheus_config,
            self.ports.control,
            self.ports.loadgen,
            self.paths.targets,
            auth.token_file(self.paths.root),
            rules,
        )

    async def reload(self, rules_patch: Mapping[str, AlertRulePatch], deadline: float) -> None:
        """Load the shared rules with `rules_patch` (empty: as shipped) into the running
        Prometheus, as an operator reloads a changed rule on a cluster: the config rewritten,
        SIGHUP (the stack's own signal: there is no reload endpoint), and wait until Prometheus
        says that reload succeeded. Alerts of unchanged rules keep their state."""
        if self.pid is None or self._process is None or self._process.poll() is not None:
            raise StackError("Prometheus is not running: cannot reload its rules")
        self.rules_patch = dict(rules_patch)
        self._write_config()
        sent = time.time()
        os.kill(self.pid, signal.SIGHUP)
        url = f"http://{LOOPBACK}:{self.ports.prometheus}/metrics"
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                try:
                    reloaded = _reloaded_since((await client.get(url)).text, sent)
                except httpx.HTTPError:
                    reloaded = None
                if reloaded is not None:
                    if not reloaded:
                        raise StackError(
                            "Prometheus did not take the new alert rules; see "
                            f"{self.paths.logs / 'prometheus.log'}"
                        )
                    return
                await asyncio.sleep(0.2)
        raise StackError("Prometheus did not reload its alert rules in time")

    async def stop(self) -> None:
        if self.pid is not None and self._process is not None:
            await asyncio.to_thread(stop_group, self.pid)
            self._process.wait()


def _reloaded_since(metrics: str, since: float) -> bool | None:
    """From Prometheus's own /metrics: True if a config reload succeeded at or after `since`
    (whole seconds), False if the last one failed, None if none happened since yet."""
    values: dict[str, float] = {}
    for line in metrics.splitlines():
        name, _, value = line.partition(" ")
        if name in RELOAD_METRICS:
            values[name] = float(value)
    if values.get("prometheus_config_last_reload_successful") == 0.0:
        return False
    done = values.get("prometheus_config_last_reload_success_timestamp_seconds")
    return True if done is not None and done >= int(since) else None


RELOAD_METRICS = frozenset(
    {
        "prometheus_config_last_reload_successful",
        "prometheus_config_last_reload_success_timestamp_seconds",
    }
)


async def bootstrap_model(
    mlflow_url: str, paths: StackPaths, deadline: float, events: EventLog
) -> None:
    """Train and register `MODEL_NAME@MODEL_ALIAS` unless MLflow already has it."""
    if await _alias_registered(mlflow_url, deadline):
        events.record("model already registered", model=f"{MODEL_NAME}@{MODEL_ALIAS}")
        return
    if importlib.util.find_spec("helius_reco") is None:
        raise StackError(
            "helius_reco is not installed: pip install -e service (or set "
            "bootstrap_model: false in the stack profile)"
        )
    log_path = paths.logs / "train.log"
    argv = [sys.executable, "-m", "helius_reco.train", "--tracking-uri", mlflow_url]
    with log_path.open("ab") as log_file:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            code = await asyncio.wait_for(process.wait(), max(5.0, deadline - time.monotonic()))
        except TimeoutError:
            process.kill()
            raise ProcessStartError(f"model training timed out; see {log_path}") from None
    if code != 0:
        raise ProcessStartError(f"model training failed ({code}); see {log_path}")
    events.record("model trained and registered", model=f"{MODEL_NAME}@{MODEL_ALIAS}")


async def _alias_registered(mlflow_url: str, deadline: float) -> bool:
    """Ask MLflow's REST API for the alias until it answers: True (200) or False (404)."""
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            try:
                response = await registry.ask_alias(client, mlflow_url)
                if response.status_code == 200:
                    return True
                if response.status_code == 404:
                    return False
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ProcessStartError("MLflow did not answer the model alias lookup")
            await asyncio.sleep(0.3)


async def wait_reco_on_registry_model(
    pods: Sequence[Pod], prometheus_url: str, refresh_interval: float, events: EventLog
) -> None:
    """Wait (best effort) for the steady state experiments start from: every recommender
    confirmed on the registry model (not in fallback), and Prometheus has seen it."""
    deadline = time.monotonic() + max(30.0, 5 * refresh_interval)
    query = OUT_OF_FALLBACK_QUERY
    prom = PrometheusAPI(prometheus_url, 2.0)
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            confirmed = 0
            for pod in pods:
                try:
                    health = (await client.get(pod.url + "/health")).json()
                except (httpx.HTTPError, ValueError):
                    health = {}
                if health.get("model_source") == "registry" and not health.get(
                    "fallback_mode", True
                ):
                    confirmed += 1
            if confirmed == len(pods) and await _prom_count(prom, query) >= len(pods):
                return
            await asyncio.sleep(0.3)
    events.record("warning: not every recommender is confirmed on the registry model yet")


async def _prom_count(prometheus_api: PrometheusAPI, query: str) -> int:
    """The value of a `count(...)` instant query, 0 when it has no data or fails."""
    try:
        value = await asyncio.to_thread(prometheus_api.instant_value, query)
    except PromAPIError:
        return 0
    return int(value or 0)
