"""How the stack's pods are started: the MLflow and recommender pod specs.

A spec's argv/env callables run when a pod starts, so they read the stack's current profile
(`config()`): a profile swap (`PUT /profile`) takes effect with the next recommender pods.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from chaoshelius.stack import mlflow_server
from chaoshelius.stack.config import StackConfig
from chaoshelius.stack.ports import StackPorts
from chaoshelius.stack.postgres import PostgresServer
from chaoshelius.stack.procs import LOOPBACK
from chaoshelius.stack.state import StackPaths
from chaoshelius.stack.supervisor import Pod, PodSpec
from chaoshelius.topology import MODEL_ALIAS, MODEL_NAME, App

MLFLOW_DB = "mlflow"
MLFLOW_DB_ROLE = "mlflow"  # owns only MLFLOW_DB, not a superuser: MLflow connects as it
# the recommender's MLflow client, imported once by its prefork parent (chaoshelius.stack.prefork)
RECO_PRELOAD = ("mlflow.tracking", "mlflow.artifacts")


def backend_uri(postgres: PostgresServer, ports: StackPorts) -> str:
    """MLflow's backend store: its database, through the mlflow-rds path proxy."""
    uri = postgres.uri(MLFLOW_DB, port=ports.mlflow_rds_path, user=MLFLOW_DB_ROLE)
    return uri + "?connect_timeout=3"


def mlflow_spec(
    paths: StackPaths, ports: StackPorts, postgres: PostgresServer, config: StackConfig
) -> PodSpec:
    def argv(pod: Pod) -> list[str]:
        return mlflow_server.server_argv(
            backend_uri(postgres, ports), paths.artifacts, pod.port, LOOPBACK, pod.work_dir / "prom"
        )

    def env(pod: Pod) -> dict[str, str]:
        return {
            **os.environ,
            **mlflow_server.SERVER_ENV,
            **postgres.client_env(),  # the password, from a 0600 file: not in the URI
            "PYTHONUNBUFFERED": "1",
        }

    return PodSpec(
        App.MLFLOW,
        argv,
        env,
        mlflow_server.READY_PATH,
        config.mlflow_liveness.as_probe() if config.mlflow_liveness else None,
        preload=lambda: mlflow_server.PRELOAD,
        readiness=config.mlflow_readiness,
    )


def reco_spec(paths: StackPaths, ports: StackPorts, config: Callable[[], StackConfig]) -> PodSpec:
    """The recommender's spec; `config()` is the profile in force when a pod starts."""

    def argv(pod: Pod) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", config().reco_app, "--factory",
            "--host", LOOPBACK, "--port", str(pod.port), "--no-access-log",
        ]  # fmt: skip

    def env(pod: Pod) -> dict[str, str]:
        cache = paths.cache / f"{App.RECO}-{pod.slot}"  # kept across replacements
        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "HELIUS_MLFLOW_TRACKING_URI": f"http://{LOOPBACK}:{ports.reco_mlflow_path}",
            "HELIUS_MODEL_NAME": MODEL_NAME,
            "HELIUS_MODEL_ALIAS": MODEL_ALIAS,
            "HELIUS_POD_NAME": pod.name,
            "HELIUS_ZONE": pod.zone,
            "HELIUS_CACHE_DIR": str(cache),
            "HELIUS_REFRESH_INTERVAL_SECONDS": f"{config().refresh_interval_seconds:g}",
            **config().reco_env,
        }

    def preload() -> list[str]:
        # the app's module (a negative control's defect, or the service), its MLflow client
        return ["uvicorn.main", config().reco_app.split(":")[0], *RECO_PRELOAD]

    liveness = config().reco_liveness
    return PodSpec(
        App.RECO,
        argv,
        env,
        "/ready",
        liveness.as_probe() if liveness else None,
        preload=preload,
    )
