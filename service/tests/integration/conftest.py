"""Real servers for the service's integration tests: PostgreSQL, `mlflow server`, and the
service itself started with its documented run command.

PostgreSQL and MLflow come from the harness (`chaoshelius.stack`), which handles running as
root (PostgreSQL as an unprivileged user) and kills MLflow's whole process group.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from polling import wait_for
from prometheus_client.parser import text_string_to_metric_families

from chaoshelius.stack.mlflow_server import MlflowServer, upgrade_schema
from chaoshelius.stack.postgres import PostgresServer
from chaoshelius.stack.procs import spawn_group, stop_group

DATABASE = "mlflow_reco_it"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MlflowHandle:
    """One MLflow server on a fixed port that tests can kill and bring back."""

    def __init__(self, backend_uri: str, root: Path, env: dict[str, str]) -> None:
        self.backend_uri = backend_uri
        self.root = root
        self.env = env  # the PostgreSQL password file (PGPASSFILE): not in the URI
        self.port = free_port()
        self.server: MlflowServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        if self.server is not None and self.server.process and self.server.process.poll() is None:
            return
        self.server = MlflowServer(
            self.backend_uri,
            self.root / "artifacts",
            self.port,
            self.root / "mlflow.log",
            env=self.env,
        )
        self.server.start()
        self.server.wait_ready(timeout=120)

    def kill(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server = None


@pytest.fixture(scope="session")
def mlflow_handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowHandle]:
    root = tmp_path_factory.mktemp("reco-stack")
    postgres = PostgresServer(root / "pgdata", free_port())
    postgres.start()
    try:
        postgres.create_database(DATABASE)
        backend = postgres.uri(DATABASE) + "?connect_timeout=3"
        upgrade_schema(backend, env=postgres.client_env())
        handle = MlflowHandle(backend, root, postgres.client_env())
        try:
            yield handle
        finally:
            handle.kill()
    finally:
        postgres.stop()


@pytest.fixture
def mlflow(mlflow_handle: MlflowHandle) -> MlflowHandle:
    """MLflow, up at the start of the test (brought back if a previous test killed it)."""
    mlflow_handle.up()
    return mlflow_handle


class ServiceProcess:
    """`python -m uvicorn helius_reco.main:create_app --factory` with HELIUS_* settings."""

    def __init__(self, tracking_uri: str, cache_dir: Path, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.env = {
            "HELIUS_MLFLOW_TRACKING_URI": tracking_uri,
            "HELIUS_CACHE_DIR": str(cache_dir),
            "HELIUS_REFRESH_INTERVAL_SECONDS": "1",
            "HELIUS_REFRESH_DEADLINE_SECONDS": "5",
            "HELIUS_POD_NAME": "helius-reco-it000",
            "HELIUS_ZONE": "zone-a",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5)

    def start(self) -> None:
        argv = [
            sys.executable, "-m", "uvicorn", "helius_reco.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
        ]  # fmt: skip
        self.process = spawn_group(argv, self.log_path, env=self.env)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_group(self.process.pid)
            self.process.wait()
        self.client.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def answers(self, path: str) -> bool:
        try:
            return self.client.get(path).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_live(self, timeout: float = 30) -> float:
        return wait_for(lambda: self.answers("/health"), timeout, "service /health")

    def wait_ready(self, timeout: float = 30) -> float:
        return wait_for(lambda: self.answers("/ready"), timeout, "service /ready")

    def health(self) -> dict[str, object]:
        body: dict[str, object] = self.client.get("/health").json()
        return body

    def metric(self, name: str, **labels: str) -> float | None:
        text = self.client.get("/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return None

    def predict(self, user: str = "u0001") -> httpx.Response:
        return self.client.post("/predict", json={"user_id": user, "k": 5})


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    started: list[ServiceProcess] = []

    def start(tracking_uri: str, cache_dir: Path | None = None, **env: str) -> ServiceProcess:
        index = len(started)
        service = ServiceProcess(
            tracking_uri, cache_dir or tmp_path / "cache", tmp_path / f"service-{index}.log", **env
        )
        started.append(service)
        service.start()
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture(autouse=True)
def _bounded_mlflow_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test process's own MLflow calls (registering models) fail fast too."""
    for key, value in {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
