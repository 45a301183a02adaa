"""Promote a new model version in MLflow (a state change, not a fault: it is not undone).

Used by model-promoted-during-partition: a release pipeline moves `reco@champion` while the
recommenders cannot reach MLflow, and every pod must converge on it once they can. It talks to
MLflow's REST API at `helius_mlflow_url` (local stack: its MLflow service proxy; a cluster: the
MLflow your runner can reach), with the harness's HTTP timeout on every call.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from chaoslib.types import Configuration, Secrets

from chaoshelius import registry
from chaoshelius.config import HarnessConfig
from chaoshelius.exceptions import TargetError
from chaoshelius.topology import MODEL_ALIAS, MODEL_NAME

__all__ = ["promote_model"]

_READY_TIMEOUT_SECONDS = 30.0


def promote_model(
    model_name: str = MODEL_NAME,
    alias: str = MODEL_ALIAS,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Register a new version of `model_name` from the artifacts of the version `alias` points
    at, wait until MLflow says it is READY, and move `alias` to it.

    Returns `{"model", "alias", "from_version", "to_version", "promoted_at"}`. The recommenders
    must then pick the new version up by themselves (probe `models_converged_within`).
    """
    config = HarnessConfig.from_chaos(configuration)
    base = config.helius_mlflow_url.rstrip("/")
    with httpx.Client(base_url=base, timeout=config.helius_http_timeout_seconds) as client:
        current = registry.champion(client, model_name, alias)
        created = registry.call(
            client,
            "POST",
            "/model-versions/create",
            json={
                "name": model_name,
                "source": current["source"],
                "run_id": current.get("run_id", ""),
                "description": f"promoted by chaoshelius from version {current['version']}",
            },
        )["model_version"]
        version = str(created["version"])
        deadline = time.monotonic() + _READY_TIMEOUT_SECONDS
        while created.get("status", "READY") != "READY":
            if time.monotonic() > deadline:
                raise TargetError(
                    f"{model_name} version {version} is still {created.get('status')} after "
                    f"{_READY_TIMEOUT_SECONDS:.0f} s"
                )
            time.sleep(0.5)
            created = registry.call(
                client,
                "GET",
                "/model-versions/get",
                params={"name": model_name, "version": version},
            )["model_version"]
        registry.call(
            client,
            "POST",
            registry.ALIAS,
            json={"name": model_name, "alias": alias, "version": version},
        )
    return {
        "model": model_name,
        "alias": alias,
        "from_version": str(current["version"]),
        "to_version": version,
        "promoted_at": time.time(),
    }
