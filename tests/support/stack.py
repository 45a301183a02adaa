"""Helpers for the local-stack integration tests: polling with deadlines, process accounting,
the HTTP calls the tests make through the stack's proxies.

Nothing here mocks anything: every call goes to the real stack's processes and ports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg2

from chaoshelius.stack import auth
from chaoshelius.stack.client import ControlClient
from chaoshelius.stack.ports import StackPorts
from chaoshelius.stack.postgres import PostgresServer
from chaoshelius.stack.procs import LOOPBACK, pid_alive, port_is_free
from chaoshelius.stack.state import StackPaths, StackState
from chaoshelius.topology import MODEL_ALIAS, MODEL_NAME, ZONES, App
from support.waiting import wait_for

ALIAS_PATH = "/api/2.0/mlflow/registered-models/alias"
PREDICT_BODY = {"user_id": "u0001", "k": 10}
# Pod (re)starts compete for two shared cores with another stack: MLflow can take ~40 s.
POD_READY_SECONDS = 120.0


@dataclass
class StackHandle:
    """The running stack of the test session."""

    state_dir: Path
    ports: StackPorts
    control: ControlClient
    http: httpx.Client

    @property
    def mlflow_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.mlflow_service}"

    @property
    def reco_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.reco_service}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.prometheus}"

    # -- pods --------------------------------------------------------------------------------
    def pods(self, selector: str = "") -> list[dict[str, Any]]:
        return self.control.pods(selector)

    def names(self, selector: str = "") -> set[str]:
        return {pod["name"] for pod in self.pods(selector)}

    def fully_ready(self) -> bool:
        """Every app runs one ready pod per zone, nothing terminating, no fault active."""
        status = self.control.status()
        if status["faults"] or status["drained_zones"]:
            return False
        for app in (App.MLFLOW, App.RECO):
            pods = [pod for pod in status["pods"] if pod["app"] == app]
            if sorted(pod["zone"] for pod in pods) != sorted(ZONES):
                return False
            if not all(pod["state"] == "ready" for pod in pods):
                return False
        return True

    def wait_fully_ready(self, timeout: float = POD_READY_SECONDS) -> None:
        wait_for(self.fully_ready, timeout, "every pod ready, no fault active", interval=0.5)

    def undo_all_faults(self) -> None:
        for fault in self.control.faults():
            self.control.remove_fault(fault["id"])

    # -- calls through the proxies -----------------------------------------------------------
    def alias_lookup(self, base_url: str | None = None, timeout: float = 8.0) -> httpx.Response:
        """MLflow's get-alias call: it needs the database (MLflow's /health does not)."""
        return self.http.get(
            (base_url or self.mlflow_url) + ALIAS_PATH,
            params={"name": MODEL_NAME, "alias": MODEL_ALIAS},
            timeout=timeout,
        )

    def alias_ok(self, base_url: str | None = None, timeout: float = 8.0) -> bool:
        try:
            return self.alias_lookup(base_url, timeout).status_code == 200
        except httpx.HTTPError:
            return False

    def predict(self, base_url: str | None = None, timeout: float = 10.0) -> httpx.Response:
        return self.http.post(
            (base_url or self.reco_url) + "/predict", json=PREDICT_BODY, timeout=timeout
        )

    def pg_connect(self, timeout: int = 2) -> Any:
        """A PostgreSQL connection through the mlflow-rds path proxy (MLflow's own route)."""
        return psycopg2.connect(
            host=LOOPBACK,
            port=self.ports.mlflow_rds_path,
            user="postgres",
            password=self.pg_password,
            dbname="mlflow",
            connect_timeout=timeout,
        )

    @property
    def pg_password(self) -> str:
        return PostgresServer(StackPaths(self.state_dir).postgres_data, 0).password

    @property
    def token(self) -> str:
        token = auth.read_token(self.state_dir)
        assert token, f"no control token in {self.state_dir}"
        return token


def outcome(call: Callable[[], httpx.Response]) -> tuple[float, str]:
    """(seconds, 'HTTP 200' | exception class name) of one call."""
    started = time.monotonic()
    try:
        result = f"HTTP {call().status_code}"
    except httpx.HTTPError as exc:
        result = type(exc).__name__
    return time.monotonic() - started, result


# -- processes -------------------------------------------------------------------------------
def stack_pids(state: StackState) -> set[int]:
    """Every live process of a stack: the supervisor and its descendants, PostgreSQL's tree."""
    pids: set[int] = set()
    for root in (state.pids.supervisor, state.pids.postgres):
        if root is None:
            continue
        try:
            process = psutil.Process(root)
            pids.add(root)
            pids.update(child.pid for child in process.children(recursive=True))
        except psutil.NoSuchProcess:
            continue
    return pids


def processes_under(state_dir: Path) -> list[str]:
    """Live processes whose command line or working directory is inside `state_dir`."""
    root = str(state_dir.resolve())
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
        info = process.info
        if info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = " ".join(info["cmdline"] or [])
        if root in cmdline or (info["cwd"] or "").startswith(root):
            found.append(f"{info['pid']}: {cmdline[:160]}")
    return found


def survivors(pids: set[int], state_dir: Path) -> list[str]:
    alive = [f"{pid}: pid still alive" for pid in sorted(pids) if pid_alive(pid)]
    return alive + processes_under(state_dir)


def busy_ports(ports: StackPorts) -> list[int]:
    return [port for port in ports.listeners() if not port_is_free(port)]
