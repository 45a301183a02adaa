"""A real `mlflow server` process on a PostgreSQL backend, lean and safe to kill.

Facts this module is built on (docs/architecture.md, "MLflow on PostgreSQL"): three servers
migrating a fresh schema race, so `upgrade_schema()` runs `mlflow db upgrade` once before any
replica starts; `mlflow server` spawns uvicorn, so a kill is a SIGKILL of the whole process
group; `/health` stays 200 with the database gone, so readiness makes a real registry call.
`--workers 1` and no job runner keep a replica near 370 MiB; NullPool + `connect_timeout=3` (set
by the caller in the URI) make every request fail fast with the database cut instead of
exhausting a pool.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from chaoshelius.stack.errors import ProcessStartError, StackError
from chaoshelius.stack.procs import LOOPBACK, ensure_port_free, kill_group, spawn_group, stop_group

READY_PATH = "/api/2.0/mlflow/registered-models/search?max_results=1"

SERVER_ENV = {
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_SQLALCHEMYSTORE_POOLCLASS": "NullPool",
}


# what a replica's prefork parent imports once (chaoshelius.stack.prefork): ~85 % of a replica's
# import time. Not `mlflow.server`: it reads `prometheus_multiproc_dir` (per replica) on import.
PRELOAD = (
    "uvicorn.main",
    "flask",
    "mlflow",
    "mlflow.tracking",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "mlflow.protos.service_pb2",
    "mlflow.protos.model_registry_pb2",
)


def _mlflow_bin() -> str:
    return str(Path(sys.executable).with_name("mlflow"))


def upgrade_schema(
    backend_uri: str, timeout: float = 180.0, env: Mapping[str, str] | None = None
) -> None:
    """Create/migrate MLflow's schema once (`mlflow db upgrade`), before any replica starts.
    `env` adds to the environment (`PostgresServer.client_env()`: the password file)."""
    done = subprocess.run(  # noqa: S603  argv list, no shell: the venv's mlflow
        [_mlflow_bin(), "db", "upgrade", backend_uri],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace").strip()
        raise StackError(f"mlflow db upgrade {backend_uri} failed: {output[-1200:]}")


def server_argv(
    backend_uri: str,
    artifacts_dir: Path,
    port: int,
    host: str,
    metrics_dir: Path | None,
    single_process: bool = True,
) -> list[str]:
    """The `mlflow server` command line of one replica.

    `single_process` runs the same `mlflow server` CLI through `chaoshelius.stack.mlflow_pod`,
    which serves uvicorn in-process instead of spawning it: half the memory and about half the
    cold start per replica on two cores (measured: 287 vs 553 MiB RSS, 11-24 vs 35-42 s ready).
    """
    launcher = (
        [sys.executable, "-m", "chaoshelius.stack.mlflow_pod"]
        if single_process
        else [_mlflow_bin(), "server"]
    )
    argv = [
        *launcher,
        "--backend-store-uri", backend_uri,
        "--artifacts-destination", str(artifacts_dir),
        "--serve-artifacts",
        "--host", host,
        "--port", str(port),
        "--workers", "1",
        "--allowed-hosts", "127.0.0.1,localhost,127.0.0.1:*,localhost:*",
    ]  # fmt: skip
    if metrics_dir is not None:
        argv += ["--expose-prometheus", str(metrics_dir)]
    return argv


def is_ready(url: str, timeout: float = 2.0) -> bool:
    """A real registry call (it needs the database), not /health."""
    try:
        response = httpx.get(url + READY_PATH, timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


class MlflowServer:
    """One `mlflow server` replica in its own process group."""

    def __init__(
        self,
        backend_uri: str,
        artifacts_dir: Path,
        port: int,
        log_path: Path,
        host: str = LOOPBACK,
        env: Mapping[str, str] | None = None,
        metrics_dir: Path | None = None,
    ) -> None:
        self.backend_uri = backend_uri
        self.artifacts_dir = Path(artifacts_dir)
        self.port = port
        self.log_path = Path(log_path)
        self.host = host
        self.env = {**SERVER_ENV, **(env or {})}
        self.metrics_dir = metrics_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def argv(self) -> list[str]:
        return server_argv(
            self.backend_uri, self.artifacts_dir, self.port, self.host, self.metrics_dir
        )

    def start(self) -> None:
        """Spawn the server (does not wait; see `wait_ready`)."""
        if self.process is not None and self.process.poll() is None:
            return
        ensure_port_free(self.port, "MLflow server", self.host)
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        if self.metrics_dir is not None:
            self.metrics_dir.mkdir(parents=True, exist_ok=True)
        self.process = spawn_group(self.argv, self.log_path, env=self.env)

    def is_ready(self) -> bool:
        return is_ready(self.url)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until a registry call succeeds; raise if the process died or time ran out."""
        deadline = time.monotonic() + timeout
        while not self.is_ready():
            if self.process is not None and self.process.poll() is not None:
                raise ProcessStartError(
                    f"mlflow server on port {self.port} exited with {self.process.returncode}; "
                    f"see {self.log_path}"
                )
            if time.monotonic() > deadline:
                raise ProcessStartError(
                    f"mlflow server on port {self.port} not ready within {timeout:.0f} s; "
                    f"see {self.log_path}"
                )
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL the whole process group (the parent alone would orphan uvicorn)."""
        if self.process is None:
            return
        kill_group(self.process.pid)
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM the group, SIGKILL after a grace period (idempotent)."""
        if self.process is None:
            return
        stop_group(self.process.pid)
        self.process.wait()

    def __enter__(self) -> Self:
        self.start()
        self.wait_ready()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
