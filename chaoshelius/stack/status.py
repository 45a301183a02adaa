"""What the running stack reports: `GET /status`, `/metrics`, `stack.json` and Prometheus'
targets file, each built from the stack's parts in one place."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from chaoshelius.stack import api_models as api
from chaoshelius.stack import prometheus
from chaoshelius.stack.boot import PrometheusProcess
from chaoshelius.stack.config import StackConfig
from chaoshelius.stack.haproxy import HaproxyBalancer
from chaoshelius.stack.injection import FaultInjector
from chaoshelius.stack.pod_specs import MLFLOW_DB, MLFLOW_DB_ROLE
from chaoshelius.stack.ports import StackPorts
from chaoshelius.stack.postgres import PostgresServer
from chaoshelius.stack.procs import LOOPBACK, ProcessIdentity, identify
from chaoshelius.stack.proxy import TcpProxy
from chaoshelius.stack.state import StackPaths, StackPids, StackState, write_state
from chaoshelius.stack.supervisor import Supervisor
from chaoshelius.topology import EDGE_MLFLOW_RDS, EDGE_RECO_MLFLOW, App


@dataclass
class Phase:
    """Where the stack is in its life, and the profile it runs."""

    config: StackConfig
    phase: str = "starting"
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None


class _StackCollector(Collector):
    def __init__(self, supervisor: Supervisor, faults: FaultInjector) -> None:
        self.supervisor = supervisor
        self.faults = faults

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ready = GaugeMetricFamily(
            "helius_stack_pod_ready", "1 if the pod passes readiness", labels=["app", "pod", "zone"]
        )
        for pod in self.supervisor.pods():
            ready.add_metric([str(pod.app), pod.name, pod.zone], 1.0 if pod.ready else 0.0)
        yield ready
        active = GaugeMetricFamily(
            "helius_stack_fault_active", "1 while a fault is active", labels=["kind", "target"]
        )
        current = {(str(f.kind), f.target) for f in self.faults.active()}
        for key in sorted(self.faults.seen | current):
            active.add_metric(list(key), 1.0 if key in current else 0.0)
        yield active


class StatusReporter:
    """Builds the status, the metrics and stack.json from the stack's parts."""

    def __init__(
        self,
        paths: StackPaths,
        ports: StackPorts,
        postgres: PostgresServer,
        prometheus_process: PrometheusProcess,
        supervisor: Supervisor,
        faults: FaultInjector,
        path_proxies: Mapping[str, TcpProxy],
        service_proxies: Mapping[App, TcpProxy | HaproxyBalancer],
    ) -> None:
        self.paths = paths
        self.ports = ports
        self.postgres = postgres
        self.prometheus = prometheus_process
        self.supervisor = supervisor
        self.faults = faults
        self.path_proxies = path_proxies
        self.service_proxies = service_proxies
        self._identities: dict[int, ProcessIdentity] = {}  # pid -> identity, for stack.json

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

    def pods(self) -> list[api.Pod]:
        return [api.Pod.model_validate(row) for row in self.supervisor.pod_rows()]

    def status(self, phase: Phase) -> api.Status:
        return api.Status(
            phase=phase.phase,
            error=phase.error,
            started_at=phase.started_at,
            ready_at=phase.ready_at,
            profile=phase.config.model_dump(mode="json"),
            base_port=self.ports.base,
            state_dir=str(self.paths.root),
            endpoints=self.endpoints(),
            pods=self.pods(),
            faults=self.faults.list_faults(),
            drained_zones=sorted(self.supervisor.drained),
            proxies={
                name: api.ProxyStatus(
                    mode=p.fault.status,
                    balancing=str(p.balancing),
                    open_connections=p.open_connections,
                )
                for name, p in {
                    **self.path_proxies,
                    **{f"service:{app}": p for app, p in self.service_proxies.items()},
                }.items()
            },
        )

    def metrics(self) -> bytes:
        registry = CollectorRegistry()
        registry.register(_StackCollector(self.supervisor, self.faults))
        return generate_latest(registry)

    def write_targets(self) -> None:
        """Prometheus' file_sd targets: every running pod, with its labels."""
        prometheus.write_targets(
            self.paths.targets, [(pod.port, pod.labels) for pod in self.supervisor.pods()]
        )

    def write_state(self, phase: Phase) -> None:
        """Rewrite stack.json (chaoshelius/stack/state.py: `StackState`)."""
        pids = StackPids(
            supervisor=os.getpid(), prometheus=self.prometheus.pid, postgres=self.postgres.pid
        )
        groups = [pod.pid for pod in self.supervisor.pods() if pod.pid is not None]
        # HAProxy leads a group of its own too: a sweep after a supervisor crash kills it
        groups += [
            p.pid
            for p in self.service_proxies.values()
            if isinstance(p, HaproxyBalancer) and p.pid is not None
        ]
        state = StackState(
            phase=phase.phase,
            error=phase.error,
            base_port=self.ports.base,
            ports=self.ports.by_name(),
            pids=pids,
            pod_process_groups=groups,
            proxy_balancing={
                f"service:{app}": str(p.balancing) for app, p in self.service_proxies.items()
            },
            # start time + command line of each pid above: `down` signals a pid read from
            # a stale stack.json only if it is still the same process
            identities=self._identities_of(
                [pids.supervisor, pids.prometheus, pids.postgres, *groups]
            ),
            profile=phase.config.model_dump(mode="json"),
        )
        write_state(self.paths.state_file, state)

    def _identities_of(self, pids: list[int | None]) -> dict[str, dict[str, object]]:
        live = {pid for pid in pids if pid is not None}
        self._identities = {pid: i for pid, i in self._identities.items() if pid in live}
        for pid in live - set(self._identities):
            identity = identify(pid)
            if identity is not None:
                self._identities[pid] = identity
        return {str(pid): identity.to_json() for pid, identity in self._identities.items()}
