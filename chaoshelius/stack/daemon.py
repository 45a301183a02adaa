"""The supervisor daemon: one asyncio process that owns the whole local stack.

`python -m chaoshelius.stack.daemon --state-dir DIR --base-port N [--profile FILE]` (started,
detached, by `chaoshelius stack up`). Boot order: port check, control API + proxies, Prometheus,
PostgreSQL, `mlflow db upgrade` once, MLflow pods, model bootstrap, recommender pods; the phase
in `stack.json` turns `ready` when every desired pod passes readiness and Prometheus is ready.
Faults live here, so they outlive whoever injected them, and the reaper reverts them at TTL.
SIGTERM or `POST /shutdown` stops everything (pods, Prometheus, PostgreSQL) and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import uvloop
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from chaoshelius.promapi import PromAPIError, PrometheusAPI
from chaoshelius.stack import api_models as api
from chaoshelius.stack import auth, mlflow_server, prometheus, selectors
from chaoshelius.stack.config import StackConfig
from chaoshelius.stack.control import create_app
from chaoshelius.stack.errors import InvalidRequest, NotFound, ProcessStartError, StackError
from chaoshelius.stack.faults import Fault, FaultBook, FaultKind
from chaoshelius.stack.ports import StackPorts
from chaoshelius.stack.postgres import PostgresServer
from chaoshelius.stack.procs import (
    LOOPBACK,
    ProcessIdentity,
    ensure_port_free,
    identify,
    spawn_group,
    stop_group,
)
from chaoshelius.stack.proxy import (
    Balancing,
    ProxyFault,
    RoundRobin,
    TcpProxy,
    Upstream,
)
from chaoshelius.stack.state import PRIVATE_DIR_MODE, StackPaths, write_state
from chaoshelius.stack.supervisor import Pod, PodSpec, Supervisor
from chaoshelius.topology import (
    EDGE_MLFLOW_RDS,
    EDGE_RECO_MLFLOW,
    MODEL_ALIAS,
    MODEL_NAME,
    ZONES,
    App,
    PathMode,
)

log = logging.getLogger("chaoshelius.stack")

MLFLOW_DB = "mlflow"
MLFLOW_DB_ROLE = "mlflow"  # owns only MLFLOW_DB, not a superuser: MLflow connects as it
FALLBACK_GAUGE = "reco_engine_in_fallback_mode"
BOOT_TIMEOUT_SECONDS = 240.0
# the recommender's MLflow client, imported once by its prefork parent (chaoshelius.stack.prefork)
RECO_PRELOAD = ("mlflow.tracking", "mlflow.artifacts")


class _QuietServer(uvicorn.Server):
    """uvicorn inside our loop: the daemon handles signals itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _StackCollector(Collector):
    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ready = GaugeMetricFamily(
            "helius_stack_pod_ready", "1 if the pod passes readiness", labels=["app", "pod", "zone"]
        )
        for pod in self.stack.supervisor.pods():
            ready.add_metric([str(pod.app), pod.name, pod.zone], 1.0 if pod.ready else 0.0)
        yield ready
        active = GaugeMetricFamily(
            "helius_stack_fault_active", "1 while a fault is active", labels=["kind", "target"]
        )
        current = {(str(f.kind), f.target) for f in self.stack.faults.active()}
        for key in sorted(self.stack.seen_faults | current):
            active.add_metric(list(key), 1.0 if key in current else 0.0)
        yield active


class Stack:
    """Everything the daemon runs, and the operations the control API exposes."""

    def __init__(self, paths: StackPaths, ports: StackPorts, config: StackConfig) -> None:
        self.paths = paths
        self.ports = ports
        self.config = config
        self.phase = "starting"
        self.error: str | None = None
        self.started_at = time.time()
        self.ready_at: float | None = None
        self.faults = FaultBook()
        self.seen_faults: set[tuple[str, str]] = set()
        self.events: deque[dict[str, Any]] = deque(maxlen=2000)
        self.postgres = PostgresServer(
            paths.postgres_data, ports.postgres, log_path=paths.logs / "postgres.log"
        )
        self.prometheus_pid: int | None = None
        self._identities: dict[int, ProcessIdentity] = {}  # pid -> identity, for stack.json
        self._stop = asyncio.Event()
        self.supervisor = Supervisor(
            specs={App.MLFLOW: self._mlflow_spec(), App.RECO: self._reco_spec()},
            placements={App.MLFLOW: config.mlflow.zone_of, App.RECO: config.reco.zone_of},
            replicas={App.MLFLOW: config.mlflow.replicas, App.RECO: config.reco.replicas},
            pod_ports=ports.pod_ports(),
            logs_dir=paths.logs,
            run_dir=paths.run,
            replace_delay=config.replace_delay_seconds,
            on_change=self._changed,
            prefork=config.prefork_pods,
        )
        rds: Upstream = (LOOPBACK, ports.postgres)
        self.paths_proxies = {
            EDGE_MLFLOW_RDS: TcpProxy(EDGE_MLFLOW_RDS, ports.mlflow_rds_path, lambda: rds),
            EDGE_RECO_MLFLOW: TcpProxy(
                EDGE_RECO_MLFLOW, ports.reco_mlflow_path, self._reco_mlflow_upstream
            ),
        }
        self.service_proxies = {
            App.MLFLOW: TcpProxy(
                "mlflow-service",
                ports.mlflow_service,
                RoundRobin(lambda: self.supervisor.ready_upstreams(App.MLFLOW)),
            ),
            App.RECO: TcpProxy(
                "reco-service",
                ports.reco_service,
                RoundRobin(lambda: self.supervisor.ready_upstreams(App.RECO)),
                balancing=Balancing(config.reco_proxy_balancing),
            ),
        }

    # -- pod specs ---------------------------------------------------------------------------
    @property
    def backend_uri(self) -> str:
        uri = self.postgres.uri(MLFLOW_DB, port=self.ports.mlflow_rds_path, user=MLFLOW_DB_ROLE)
        return uri + "?connect_timeout=3"

    def _mlflow_spec(self) -> PodSpec:
        def argv(pod: Pod) -> list[str]:
            return mlflow_server.server_argv(
                self.backend_uri, self.paths.artifacts, pod.port, LOOPBACK, pod.work_dir / "prom"
            )

        def env(pod: Pod) -> dict[str, str]:
            return {
                **os.environ,
                **mlflow_server.SERVER_ENV,
                **self.postgres.client_env(),  # the password, from a 0600 file: not in the URI
                "PYTHONUNBUFFERED": "1",
            }

        return PodSpec(
            App.MLFLOW,
            argv,
            env,
            mlflow_server.READY_PATH,
            self.config.mlflow_liveness.as_probe() if self.config.mlflow_liveness else None,
            preload=lambda: mlflow_server.PRELOAD,
        )

    def _reco_spec(self) -> PodSpec:
        def argv(pod: Pod) -> list[str]:
            return [
                sys.executable, "-m", "uvicorn", self.config.reco_app, "--factory",
                "--host", LOOPBACK, "--port", str(pod.port), "--no-access-log",
            ]  # fmt: skip

        def env(pod: Pod) -> dict[str, str]:
            cache = self.paths.cache / f"{App.RECO}-{pod.slot}"  # kept across replacements
            return {
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "HELIUS_MLFLOW_TRACKING_URI": f"http://{LOOPBACK}:{self.ports.reco_mlflow_path}",
                "HELIUS_MODEL_NAME": MODEL_NAME,
                "HELIUS_MODEL_ALIAS": MODEL_ALIAS,
                "HELIUS_POD_NAME": pod.name,
                "HELIUS_ZONE": pod.zone,
                "HELIUS_CACHE_DIR": str(cache),
                "HELIUS_REFRESH_INTERVAL_SECONDS": f"{self.config.refresh_interval_seconds:g}",
                **self.config.reco_env,
            }

        def preload() -> list[str]:
            # the app's module (a negative control's defect, or the service), its MLflow client
            return ["uvicorn.main", self.config.reco_app.split(":")[0], *RECO_PRELOAD]

        liveness = self.config.reco_liveness
        return PodSpec(
            App.RECO,
            argv,
            env,
            "/ready",
            liveness.as_probe() if liveness else None,
            preload=preload,
        )

    def _reco_mlflow_upstream(self) -> Upstream | None:
        if self.config.reco_mlflow_endpoint == "service":
            return (LOOPBACK, self.ports.mlflow_service)
        slots = self.supervisor.slots[App.MLFLOW]
        pod = slots[0].pod if slots else None
        return (LOOPBACK, pod.port) if pod is not None and not pod.exited else None

    # -- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        tasks: list[asyncio.Task[Any]] = []
        code = 0
        try:
            for port, what in self.ports.listeners().items():
                ensure_port_free(port, what)
            token = auth.create_token(self.paths.root)  # before stack.json says we are up
            self._write_state()
            tasks = await self._start_front(loop, token)
            await self._boot()
            self.phase = "ready"
            self.ready_at = time.time()
            self._event("stack ready", seconds=round(self.ready_at - self.started_at, 1))
            self._write_state()
            await self._stop.wait()
        except (StackError, OSError) as exc:
            self.phase, self.error, code = "failed", str(exc), 1
            self._event("boot failed", error=str(exc))
            self._write_state()
            log.error("%s", exc)
        finally:
            self.phase = "stopping"
            self._write_state()
            await self._teardown(tasks)
            self.paths.state_file.unlink(missing_ok=True)
        return code

    def request_stop(self) -> None:
        self._stop.set()

    async def _start_front(
        self, loop: asyncio.AbstractEventLoop, token: str
    ) -> list[asyncio.Task[Any]]:
        server = _QuietServer(
            uvicorn.Config(
                create_app(self, token),
                host=LOOPBACK,
                port=self.ports.control,
                log_level="warning",
                access_log=False,
                lifespan="off",
            )
        )
        self._control = server
        tasks = [loop.create_task(server.serve())]
        for proxy in [*self.paths_proxies.values(), *self.service_proxies.values()]:
            await proxy.start()
        tasks.append(loop.create_task(self.supervisor.run()))
        tasks.append(loop.create_task(self._reaper()))
        self._start_prometheus()
        return tasks

    async def _boot(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT_SECONDS
        await asyncio.to_thread(self.postgres.start)
        await asyncio.to_thread(self.postgres.create_database, MLFLOW_DB, MLFLOW_DB_ROLE)
        self._event("postgres ready", port=self.ports.postgres)
        # No separate `mlflow db upgrade` (8 s of imports): replica 0 migrates the schema when it
        # starts and the other replicas wait until it is ready, so no two servers migrate at once.
        self.supervisor.leader_first.add(App.MLFLOW)
        self.supervisor.enabled.update({App.MLFLOW, App.RECO})  # the service starts without MLflow
        self.supervisor.poke()
        if self.config.mlflow.replicas > 0:
            await self._until(
                lambda: bool(self.supervisor.ready_upstreams(App.MLFLOW)),
                deadline,
                "no MLflow pod became ready",
            )
            if self.config.bootstrap_model:
                await self._bootstrap_model(deadline)
        await self._until(self.supervisor.all_ready, deadline, "not every pod became ready")
        await self._until(
            self._prometheus_ready, deadline, "Prometheus did not become ready", blocking=True
        )
        if self.config.bootstrap_model and self.config.mlflow.replicas > 0:
            await self._wait_reco_on_registry_model()

    async def _wait_reco_on_registry_model(self) -> None:
        """Wait (best effort) for the steady state experiments start from: every recommender
        confirmed on the registry model (not in fallback), and Prometheus has seen it."""
        deadline = time.monotonic() + max(30.0, 5 * self.config.refresh_interval_seconds)
        pods = self.supervisor.pods(f"app={App.RECO}")
        query = f"count({FALLBACK_GAUGE} == 0)"
        prom = PrometheusAPI(f"http://{LOOPBACK}:{self.ports.prometheus}", 2.0)
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
        self._event("warning: not every recommender is confirmed on the registry model yet")

    async def _until(
        self, predicate: Callable[[], bool], deadline: float, what: str, blocking: bool = False
    ) -> None:
        """Poll until `predicate()`; `blocking` predicates run in a thread."""
        while not (await asyncio.to_thread(predicate) if blocking else predicate()):
            if self._stop.is_set():
                raise StackError("stopped while starting")
            if time.monotonic() > deadline:
                raise ProcessStartError(
                    f"{what} within {BOOT_TIMEOUT_SECONDS:.0f} s; see the logs in {self.paths.logs}"
                )
            await asyncio.sleep(0.2)

    async def _bootstrap_model(self, deadline: float) -> None:
        url = f"http://{LOOPBACK}:{self.ports.mlflow_service}"
        alias = f"{url}/api/2.0/mlflow/registered-models/alias"
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                try:
                    response = await client.get(
                        alias, params={"name": MODEL_NAME, "alias": MODEL_ALIAS}
                    )
                    if response.status_code == 200:
                        self._event("model already registered", model=f"{MODEL_NAME}@{MODEL_ALIAS}")
                        return
                    if response.status_code == 404:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise ProcessStartError("MLflow did not answer the model alias lookup")
                await asyncio.sleep(0.3)
        if importlib.util.find_spec("helius_reco") is None:
            raise StackError(
                "helius_reco is not installed: pip install -e service (or set "
                "bootstrap_model: false in the stack profile)"
            )
        log_path = self.paths.logs / "train.log"
        argv = [sys.executable, "-m", "helius_reco.train", "--tracking-uri", url]
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
        self._event("model trained and registered", model=f"{MODEL_NAME}@{MODEL_ALIAS}")

    def _start_prometheus(self) -> None:
        binary = prometheus.find_binary()
        prometheus.write_targets(self.paths.targets, [])
        prometheus.write_config(
            self.paths.prometheus_config,
            self.ports.control,
            self.ports.loadgen,
            self.paths.targets,
            auth.token_file(self.paths.root),
        )
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
        self.prometheus_pid = process.pid
        self._prometheus_process = process

    def _prometheus_ready(self) -> bool:
        if self._prometheus_process.poll() is not None:
            raise ProcessStartError(
                f"Prometheus exited ({self._prometheus_process.returncode}); see "
                f"{self.paths.logs / 'prometheus.log'}"
            )
        try:
            url = f"http://{LOOPBACK}:{self.ports.prometheus}/-/ready"
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    async def _teardown(self, tasks: list[asyncio.Task[Any]]) -> None:
        await self.supervisor.shutdown()
        if self.prometheus_pid is not None:
            await asyncio.to_thread(stop_group, self.prometheus_pid)
            self._prometheus_process.wait()
        for proxy in [*self.paths_proxies.values(), *self.service_proxies.values()]:
            await proxy.close()
        await asyncio.to_thread(self.postgres.stop)
        if hasattr(self, "_control"):
            self._control.should_exit = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def reconfigure(self, config: StackConfig) -> None:
        """Apply a profile that differs only in the recommender: replace its pods, wait ready.

        Everything else (PostgreSQL, MLflow, Prometheus and its history) keeps running, so a
        negative control costs seconds instead of a full restart.
        """
        if self.phase != "ready":
            raise StackError(f"the stack is {self.phase}, not ready: cannot change its profile")
        if not self.config.differs_only_in_recommender(config):
            raise StackError("this profile changes more than the recommender: restart the stack")
        if self.faults.active():
            raise StackError("faults are active: undo them before changing the profile")
        self.phase = "reconfiguring"
        self._write_state()
        self._event("profile change", profile=config.name)
        deadline = time.monotonic() + BOOT_TIMEOUT_SECONDS
        try:
            self.supervisor.enabled.discard(App.RECO)
            self.supervisor.poke()
            await self._until(
                lambda: not self.supervisor.pods(f"app={App.RECO}"),
                deadline,
                "the old recommender pods did not stop",
            )
            self.config = config  # pod specs read it when a pod starts
            self.supervisor.slots[App.RECO] = []
            self.supervisor.placements[App.RECO] = config.reco.zone_of
            self.supervisor.replicas[App.RECO] = config.reco.replicas
            self.supervisor.enabled.add(App.RECO)
            self.supervisor.poke()
            await self._until(self.supervisor.all_ready, deadline, "not every pod became ready")
            if config.bootstrap_model and config.mlflow.replicas > 0:
                await self._wait_reco_on_registry_model()
        except StackError as exc:
            self.phase, self.error = "failed", str(exc)
            self._write_state()
            raise
        self.phase = "ready"
        self._event("profile changed", profile=config.name)
        self._changed()

    # -- faults ------------------------------------------------------------------------------
    async def _reaper(self) -> None:
        """Revert expired faults every 0.1 s. An error reverting one fault (a full disk while
        rewriting stack.json...) is logged and the loop goes on: the reaper is the dead-man's
        switch, and a dead one would leave every later fault in place."""
        while True:
            for fault in self.faults.pop_expired(time.time()):
                try:
                    self._revert(fault)
                    self._event(
                        "fault expired", fault=fault.id, kind=str(fault.kind), target=fault.target
                    )
                except Exception:
                    log.exception("reverting expired fault %s failed; the reaper goes on", fault.id)
            await asyncio.sleep(0.1)

    def _revert(self, fault: Fault) -> None:
        if fault.kind is FaultKind.PATH:
            self.paths_proxies[fault.target].clear_fault()
        elif fault.kind is FaultKind.DRAIN:
            self.supervisor.drained.discard(fault.target)
        else:
            self.supervisor.scale.pop(App(fault.target), None)
        self.supervisor.poke()
        self._changed()

    def _add_fault(
        self, kind: FaultKind, target: str, params: dict[str, Any], ttl: float
    ) -> api.Fault:
        fault, replaced = self.faults.add(kind, target, params, ttl, time.time())
        self.seen_faults.add((str(kind), target))
        self._event(
            "fault injected",
            fault=fault.id,
            kind=str(kind),
            target=target,
            ttl_seconds=ttl,
            replaced=replaced.id if replaced else None,
            **params,
        )
        return api.Fault.model_validate(fault.to_json())

    def _remove(self, kind: FaultKind, target: str) -> list[api.Fault]:
        fault = self.faults.remove(kind, target)
        if fault is None:
            return []
        self._revert(fault)
        self._event("fault removed", fault=fault.id, kind=str(kind), target=target)
        return [api.Fault.model_validate(fault.to_json())]

    def cut(self, edge: str, mode: str, latency_ms: int, ttl: float) -> api.Fault:
        proxy = self._edge(edge)
        if mode == PathMode.LATENCY and latency_ms <= 0:
            raise InvalidRequest("mode latency needs latency_ms > 0")
        params: dict[str, Any] = {"mode": mode}
        if mode == PathMode.LATENCY:
            params["latency_ms"] = latency_ms
        fault = self._add_fault(FaultKind.PATH, edge, params, ttl)
        proxy.set_fault(ProxyFault(PathMode(mode), latency_ms))
        self._changed()
        return fault

    def restore(self, edge: str) -> list[api.Fault]:
        proxy = self._edge(edge)
        removed = self._remove(FaultKind.PATH, edge)
        proxy.clear_fault()
        return removed

    def drain(self, zone: str, ttl: float) -> api.Fault:
        self._zone(zone)
        fault = self._add_fault(FaultKind.DRAIN, zone, {}, ttl)
        self.supervisor.drained.add(zone)
        self.supervisor.poke()
        return fault

    def uncordon(self, zone: str) -> list[api.Fault]:
        self._zone(zone)
        removed = self._remove(FaultKind.DRAIN, zone)
        self.supervisor.drained.discard(zone)
        self.supervisor.poke()
        return removed

    def scale(self, app_name: str, replicas: int, ttl: float) -> api.Fault:
        app = self._app(app_name)
        fault = self._add_fault(FaultKind.SCALE, app, {"replicas": replicas}, ttl)
        self.supervisor.scale[app] = replicas
        self.supervisor.poke()
        return fault

    def unscale(self, app_name: str) -> list[api.Fault]:
        app = self._app(app_name)
        removed = self._remove(FaultKind.SCALE, app)
        self.supervisor.scale.pop(app, None)
        self.supervisor.poke()
        return removed

    def remove_fault(self, fault_id: str) -> list[api.Fault]:
        for fault in self.faults.active():
            if fault.id == fault_id:
                return self._remove(fault.kind, fault.target)
        return []

    def list_faults(self) -> list[api.Fault]:
        return [api.Fault.model_validate(fault.to_json()) for fault in self.faults.active()]

    # -- pods --------------------------------------------------------------------------------
    def list_pods(self, selector: selectors.Selector) -> list[api.Pod]:
        names = {pod.name for pod in self.supervisor.pods(selector)}
        return [self._pod_row(row) for row in self.supervisor.pod_rows() if row["name"] in names]

    @staticmethod
    def _pod_row(row: dict[str, Any]) -> api.Pod:
        return api.Pod.model_validate(row)

    def kill_pods(self, selector: selectors.Selector, count: int | None) -> list[str]:
        pods = [pod for pod in self.supervisor.pods(selector) if not pod.stopping]
        if not pods:
            raise NotFound(f"no running pod matches selector {_render(selector)!r}")
        if count is not None and count < len(pods):
            pods = random.sample(pods, count)
        killed = self.supervisor.kill(pods)
        self._event("pods killed", pods=killed, selector=_render(selector))
        return killed

    # -- reporting ---------------------------------------------------------------------------
    def endpoints(self) -> dict[str, str]:
        base = f"http://{LOOPBACK}"
        return {
            "control": f"{base}:{self.ports.control}",
            "reco_service": f"{base}:{self.ports.reco_service}",
            "mlflow_service": f"{base}:{self.ports.mlflow_service}",
            "prometheus": f"{base}:{self.ports.prometheus}",
            "postgres": self.postgres.uri(MLFLOW_DB, user=MLFLOW_DB_ROLE),
            f"path:{EDGE_MLFLOW_RDS}": f"127.0.0.1:{self.ports.mlflow_rds_path}",
            f"path:{EDGE_RECO_MLFLOW}": f"127.0.0.1:{self.ports.reco_mlflow_path}",
            "loadgen_metrics": f"{base}:{self.ports.loadgen}",
        }

    def status(self) -> api.Status:
        return api.Status(
            phase=self.phase,
            error=self.error,
            started_at=self.started_at,
            ready_at=self.ready_at,
            profile=self.config.model_dump(mode="json"),
            base_port=self.ports.base,
            state_dir=str(self.paths.root),
            endpoints=self.endpoints(),
            pods=[self._pod_row(row) for row in self.supervisor.pod_rows()],
            faults=self.list_faults(),
            drained_zones=sorted(self.supervisor.drained),
            proxies={
                name: api.ProxyStatus(
                    mode=p.fault.status,
                    balancing=str(p.balancing),
                    open_connections=p.open_connections,
                )
                for name, p in {
                    **self.paths_proxies,
                    **{f"service:{app}": p for app, p in self.service_proxies.items()},
                }.items()
            },
        )

    def list_events(self) -> list[dict[str, Any]]:
        return list(self.events)

    def metrics(self) -> bytes:
        registry = CollectorRegistry()
        registry.register(_StackCollector(self))
        return generate_latest(registry)

    # -- internals ---------------------------------------------------------------------------
    def _edge(self, edge: str) -> TcpProxy:
        if edge not in self.paths_proxies:
            raise NotFound(f"unknown path {edge!r}; known: {sorted(self.paths_proxies)}")
        return self.paths_proxies[edge]

    def _zone(self, zone: str) -> None:
        if zone not in ZONES:
            raise NotFound(f"unknown zone {zone!r}; known: {list(ZONES)}")

    def _app(self, name: str) -> App:
        if name not in (App.MLFLOW, App.RECO):
            raise NotFound(f"unknown app {name!r}; known: {[str(App.MLFLOW), str(App.RECO)]}")
        return App(name)

    def _event(self, what: str, **details: Any) -> None:
        entry = {"time": time.time(), "event": what, **details}
        self.events.append(entry)
        log.info("%s", json.dumps(entry))

    def _changed(self) -> None:
        prometheus.write_targets(
            self.paths.targets, [(pod.port, pod.labels) for pod in self.supervisor.pods()]
        )
        self._write_state()

    def _write_state(self) -> None:
        pids = {
            "supervisor": os.getpid(),
            "prometheus": self.prometheus_pid,
            "postgres": self.postgres.pid,
        }
        groups = [pod.pid for pod in self.supervisor.pods() if pod.pid is not None]
        write_state(
            self.paths.state_file,
            {
                "phase": self.phase,
                "error": self.error,
                "base_port": self.ports.base,
                "ports": {
                    "control": self.ports.control,
                    "reco_service": self.ports.reco_service,
                    "mlflow_service": self.ports.mlflow_service,
                    "prometheus": self.ports.prometheus,
                    "postgres": self.ports.postgres,
                    EDGE_MLFLOW_RDS: self.ports.mlflow_rds_path,
                    EDGE_RECO_MLFLOW: self.ports.reco_mlflow_path,
                    "loadgen": self.ports.loadgen,
                },
                "pids": pids,
                "pod_process_groups": groups,
                "proxy_balancing": {
                    f"service:{app}": str(p.balancing) for app, p in self.service_proxies.items()
                },
                # start time + command line of each pid above: `down` signals a pid read from
                # a stale stack.json only if it is still the same process
                "identities": self._identities_of([*pids.values(), *groups]),
                "profile": self.config.model_dump(mode="json"),
            },
        )

    def _identities_of(self, pids: list[int | None]) -> dict[str, dict[str, Any]]:
        live = {pid for pid in pids if pid is not None}
        self._identities = {pid: i for pid, i in self._identities.items() if pid in live}
        for pid in live - set(self._identities):
            identity = identify(pid)
            if identity is not None:
                self._identities[pid] = identity
        return {str(pid): identity.to_json() for pid, identity in self._identities.items()}


def _render(selector: selectors.Selector) -> str:
    """A parsed selector written back, for messages and events."""
    return ",".join(
        f"{t.key}{'!=' if t.negate else '='}{next(iter(t.values))}"
        if len(t.values) == 1
        else f"{t.key} {'notin' if t.negate else 'in'} ({','.join(sorted(t.values))})"
        for t in selector
    )


async def _prom_count(prometheus: PrometheusAPI, query: str) -> int:
    """The value of a `count(...)` instant query, 0 when it has no data or fails."""
    try:
        value = await asyncio.to_thread(prometheus.instant_value, query)
    except PromAPIError:
        return 0
    return int(value or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaoshelius.stack.daemon")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--base-port", type=int, required=True)
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # the readiness and liveness probes are several requests a second: their answers are in
    # the stack's state, not one log line each
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # everything the stack writes (state, logs, the TSDB, artifacts, its children's files) is
    # for its owner only: 0600 files, 0700 directories
    os.umask(0o777 & ~PRIVATE_DIR_MODE)
    config = StackConfig.load(args.profile) if args.profile else StackConfig()
    paths = StackPaths(args.state_dir.resolve())
    paths.create()
    stack_ports = StackPorts(args.base_port)

    async def _run() -> int:
        return await Stack(paths, stack_ports, config).run()

    # uvloop: the proxies' added latency halves against the default loop (measured 0.15 vs 0.30 ms)
    return asyncio.run(_run(), loop_factory=uvloop.new_event_loop)


if __name__ == "__main__":
    sys.exit(main())
