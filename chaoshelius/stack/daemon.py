"""The supervisor daemon: one asyncio process that owns the whole local stack.

`python -m chaoshelius.stack.daemon --state-dir DIR --base-port N [--profile FILE]` (started,
detached, by `chaoshelius stack up`). Boot order: port check, control API + proxies, Prometheus,
PostgreSQL, `mlflow db upgrade` once, MLflow pods, model bootstrap, recommender pods; the phase
in `stack.json` turns `ready` when every desired pod passes readiness and Prometheus is ready.
Faults live here, so they outlive whoever injected them, and the reaper reverts them at TTL.
SIGTERM or `POST /shutdown` stops everything (pods, Prometheus, PostgreSQL) and exits.

`Stack` only wires the parts: pod specs (pod_specs.py), boot steps (boot.py), faults and their
reaper (injection.py), status and stack.json (status.py, state.py), the event log (events.py).
It satisfies `operations.StackOperations`, the protocol the control API (control.py) calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn
import uvloop

from chaoshelius.stack import api_models as api
from chaoshelius.stack import auth, cpus, selectors
from chaoshelius.stack.boot import (
    BOOT_TIMEOUT_SECONDS,
    PrometheusProcess,
    bootstrap_model,
    until,
    wait_reco_on_registry_model,
)
from chaoshelius.stack.config import StackConfig
from chaoshelius.stack.control import create_app
from chaoshelius.stack.errors import NotFound, StackError
from chaoshelius.stack.events import EventLog
from chaoshelius.stack.haproxy import HaproxyBalancer
from chaoshelius.stack.injection import FaultInjector
from chaoshelius.stack.pod_specs import MLFLOW_DB, MLFLOW_DB_ROLE, mlflow_spec, reco_spec
from chaoshelius.stack.ports import StackPorts
from chaoshelius.stack.postgres import PostgresServer
from chaoshelius.stack.procs import LOOPBACK, ensure_port_free
from chaoshelius.stack.proxy import Balancing, RoundRobin, TcpProxy, Upstream
from chaoshelius.stack.state import PRIVATE_DIR_MODE, StackPaths
from chaoshelius.stack.status import Phase, StatusReporter
from chaoshelius.stack.supervisor import PodSpec, Supervisor
from chaoshelius.topology import EDGE_MLFLOW_RDS, EDGE_RECO_MLFLOW, App, PathMode

log = logging.getLogger("chaoshelius.stack")


class _QuietServer(uvicorn.Server):
    """uvicorn inside our loop: the daemon handles signals itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Stack:
    """Everything the daemon runs, and the operations the control API exposes."""

    def __init__(self, paths: StackPaths, ports: StackPorts, config: StackConfig) -> None:
        self.paths = paths
        self.ports = ports
        self.life = Phase(config)
        self.events = EventLog()
        self.postgres = PostgresServer(
            paths.postgres_data, ports.postgres, log_path=paths.logs / "postgres.log"
        )
        self.prometheus = PrometheusProcess(paths, ports, config.alert_rules_patch)
        self._stop = asyncio.Event()
        self.supervisor = Supervisor(
            specs=self._pod_specs(config),
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
        self.service_proxies: dict[App, TcpProxy | HaproxyBalancer] = {
            App.MLFLOW: TcpProxy(
                "mlflow-service",
                ports.mlflow_service,
                RoundRobin(lambda: self.supervisor.ready_upstreams(App.MLFLOW)),
            ),
            App.RECO: self._reco_service(paths, ports, Balancing(config.reco_proxy_balancing)),
        }
        self.faults = FaultInjector(self.supervisor, self.paths_proxies, self.events, self._changed)
        self.reporter = StatusReporter(
            paths,
            ports,
            self.postgres,
            self.prometheus,
            self.supervisor,
            self.faults,
            self.paths_proxies,
            self.service_proxies,
        )

    def _reco_service(
        self, paths: StackPaths, ports: StackPorts, balancing: Balancing
    ) -> TcpProxy | HaproxyBalancer:
        """Per request (the default, an ingress): HAProxy, whose membership `_changed` pushes;
        per connection (kube-proxy): the asyncio TcpProxy."""
        ready = functools.partial(self.supervisor.ready_upstreams, App.RECO)
        if balancing is Balancing.REQUEST:
            return HaproxyBalancer(
                "reco-service", ports.reco_service, ready, paths.run, paths.logs / "haproxy.log"
            )
        return TcpProxy("reco-service", ports.reco_service, RoundRobin(ready))

    def _pod_specs(self, config: StackConfig) -> dict[App, PodSpec]:
        """How each app's pods run under `config` (the supervisor reads them at each start and
        probe; the recommender's reads the profile in force when a pod starts)."""
        return {
            App.MLFLOW: mlflow_spec(self.paths, self.ports, self.postgres, config),
            App.RECO: reco_spec(self.paths, self.ports, lambda: self.config),
        }

    @property
    def config(self) -> StackConfig:
        """The profile in force (pod specs read it when a pod starts)."""
        return self.life.config

    def _reco_mlflow_upstream(self) -> Upstream | None:
        if self.config.reco_mlflow_endpoint == "service":
            return (LOOPBACK, self.ports.mlflow_service)
        pod = self.supervisor.leader(App.MLFLOW)
        return (LOOPBACK, pod.port) if pod is not None else None

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
            self.life.phase = "ready"
            self.life.ready_at = time.time()
            seconds = round(self.life.ready_at - self.life.started_at, 1)
            self.events.record("stack ready", seconds=seconds)
            self._write_state()
            await self._stop.wait()
        except (StackError, OSError) as exc:
            self.life.phase, self.life.error, code = "failed", str(exc), 1
            self.events.record("boot failed", error=str(exc))
            self._write_state()
            log.error("%s", exc)
        finally:
            self.life.phase = "stopping"
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
        tasks.append(loop.create_task(self.faults.reap()))
        self.prometheus.start()
        return tasks

    async def _boot(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT_SECONDS + self.config.boot_allowance_seconds
        await asyncio.to_thread(self.postgres.start)
        await asyncio.to_thread(self.postgres.create_database, MLFLOW_DB, MLFLOW_DB_ROLE)
        self.events.record("postgres ready", port=self.ports.postgres)
        # No separate `mlflow db upgrade` (8 s of imports): replica 0 migrates the schema when it
        # starts and the other replicas wait until it is ready, so no two servers migrate at once.
        # The service starts without MLflow, so both apps are enabled at once.
        self.supervisor.enable([App.MLFLOW, App.RECO], leader_first=[App.MLFLOW])
        if self.config.mlflow.replicas > 0:
            await self._until(
                lambda: bool(self.supervisor.ready_upstreams(App.MLFLOW)),
                deadline,
                "no MLflow pod became ready",
            )
            if self.config.bootstrap_model:
                mlflow_url = f"http://{LOOPBACK}:{self.ports.mlflow_service}"
                await bootstrap_model(mlflow_url, self.paths, deadline, self.events)
        await self._until(self.supervisor.all_ready, deadline, "not every pod became ready")
        await self._until(
            self.prometheus.ready, deadline, "Prometheus did not become ready", blocking=True
        )
        if self.config.bootstrap_model and self.config.mlflow.replicas > 0:
            await self._wait_reco_on_registry_model()

    async def _wait_reco_on_registry_model(self) -> None:
        await wait_reco_on_registry_model(
            self.supervisor.pods(f"app={App.RECO}"),
            f"http://{LOOPBACK}:{self.ports.prometheus}",
            self.config.refresh_interval_seconds,
            self.events,
        )

    async def _until(
        self, predicate: Callable[[], bool], deadline: float, what: str, blocking: bool = False
    ) -> None:
        await until(predicate, deadline, what, self._stop, self.paths.logs, blocking=blocking)

    async def _teardown(self, tasks: list[asyncio.Task[Any]]) -> None:
        await self.supervisor.shutdown()
        await self.prometheus.stop()
        for proxy in [*self.paths_proxies.values(), *self.service_proxies.values()]:
            await proxy.close()
        await asyncio.to_thread(self.postgres.stop)
        if hasattr(self, "_control"):
            self._control.should_exit = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def reconfigure(self, config: StackConfig) -> None:
        """Apply a profile a running stack can take in place (`StackConfig.swappable_to`): new
        recommender pods if the recommender changes; MLflow's probes applied to the pods that
        run (as once a rollout has completed) and to every pod started later; the alert rules
        reloaded by Prometheus. Then wait until every pod is ready.

        Everything else (PostgreSQL, MLflow, Prometheus and its history) keeps running, so a
        negative control costs seconds instead of a full restart.
        """
        if self.life.phase != "ready":
            raise StackError(
                f"the stack is {self.life.phase}, not ready: cannot change its profile"
            )
        if not self.config.swappable_to(config):
            raise StackError("this profile changes more than a running stack can take: restart it")
        if self.faults.active():
            raise StackError("faults are active: undo them before changing the profile")
        previous = self.config
        self.life.phase = "reconfiguring"
        self._write_state()
        self.events.record("profile change", profile=config.name)
        deadline = time.monotonic() + BOOT_TIMEOUT_SECONDS
        try:
            self.life.config = config  # pod specs read it when a pod starts
            self.supervisor.specs.update(self._pod_specs(config))
            if previous.alert_rules_patch != config.alert_rules_patch:
                await self.prometheus.reload(config.alert_rules_patch, deadline)
            if previous.recommender_differs(config):
                await self._replace_recommenders(config, deadline)
        except StackError as exc:
            self.life.phase, self.life.error = "failed", str(exc)
            self._write_state()
            raise
        self.life.phase = "ready"
        self.events.record("profile changed", profile=config.name)
        self._changed()

    async def _replace_recommenders(self, config: StackConfig, deadline: float) -> None:
        self.supervisor.disable(App.RECO)
        await self._until(
            lambda: not self.supervisor.pods(f"app={App.RECO}"),
            deadline,
            "the old recommender pods did not stop",
        )
        self.supervisor.reschedule(App.RECO, config.reco.zone_of, config.reco.replicas)
        await self._until(self.supervisor.all_ready, deadline, "not every pod became ready")
        if config.bootstrap_model and config.mlflow.replicas > 0:
            await self._wait_reco_on_registry_model()

    # -- faults (operations.StackOperations) -------------------------------------------------
    def cut_path(self, edge: str, mode: PathMode, latency_ms: int, ttl_seconds: float) -> api.Fault:
        return self.faults.cut_path(edge, mode, latency_ms, ttl_seconds)

    def restore_path(self, edge: str) -> list[api.Fault]:
        return self.faults.restore_path(edge)

    def drain_zone(self, zone: str, ttl_seconds: float) -> api.Fault:
        return self.faults.drain_zone(zone, ttl_seconds)

    def uncordon_zone(self, zone: str) -> list[api.Fault]:
        return self.faults.uncordon_zone(zone)

    def scale(self, app_name: str, replicas: int, ttl_seconds: float) -> api.Fault:
        return self.faults.scale(app_name, replicas, ttl_seconds)

    def restore_scale(self, app_name: str) -> list[api.Fault]:
        return self.faults.restore_scale(app_name)

    def remove_fault(self, fault_id: str) -> list[api.Fault]:
        return self.faults.remove_fault(fault_id)

    def list_faults(self) -> list[api.Fault]:
        return self.faults.list_faults()

    # -- pods --------------------------------------------------------------------------------
    def list_pods(self, selector: selectors.Selector) -> list[api.Pod]:
        names = {pod.name for pod in self.supervisor.pods(selector)}
        return [pod for pod in self.reporter.pods() if pod.name in names]

    def kill_pods(self, selector: selectors.Selector, count: int | None) -> list[str]:
        pods = [pod for pod in self.supervisor.pods(selector) if not pod.stopping]
        if not pods:
            raise NotFound(f"no running pod matches selector {selectors.render(selector)!r}")
        if count is not None and count < len(pods):
            pods = random.sample(pods, count)
        killed = self.supervisor.kill(pods)
        self.events.record("pods killed", pods=killed, selector=selectors.render(selector))
        return killed

    # -- reporting ---------------------------------------------------------------------------
    def status(self) -> api.Status:
        return self.reporter.status(self.life)

    def list_events(self) -> list[dict[str, Any]]:
        return self.events.entries()

    def metrics(self) -> bytes:
        return self.reporter.metrics()

    def _changed(self) -> None:
        for proxy in self.service_proxies.values():
            if isinstance(proxy, HaproxyBalancer):
                proxy.changed()  # pods turned ready or unready, came or went
        self.reporter.write_targets()
        self._write_state()

    def _write_state(self) -> None:
        self.reporter.write_state(self.life)


def _cpus_argument(text: str) -> frozenset[int]:
    try:
        return cpus.parse(text)
    except StackError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaoshelius.stack.daemon")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--base-port", type=int, required=True)
    parser.add_argument("--profile", type=Path)
    # the CPUs the stack runs on (`0-1`), first thing: every thread and process it starts
    # inherits them (chaoshelius.stack.cpus); default: wherever it was started
    parser.add_argument("--cpus", type=_cpus_argument)
    args = parser.parse_args(argv)
    if args.cpus is not None:
        cpus.pin(0, args.cpus)
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
