"""Promote a new model version in MLflow (a state change, not a fault: it is not undone).

Used by model-promoted-during-partition: a release pipeline moves `reco@champion` while the
recommenders cannot reach MLflow, and every pod must converge on it once they can. The new
version is a *different* artifact, so what the pods serve can be told apart by its digest, not
only by a version label: the champion's artifact with its neighbour scores scaled by a factor
from `seed` (chaoshelius/model/derive.py: the bytes and digest change, the rankings do not).
Everything goes through MLflow's REST API and its artifact proxy at `helius_mlflow_url` (local
stack: its MLflow service proxy; a cluster: the MLflow your runner can reach) with httpx and
the standard library: no MLflow client, no trainer, about a second.

What the promotion gave (version and artifact digest), or why it failed, is noted on the fault
windows open at the time (`details["promotions"]`), where the served-model probes read it: a
failed promotion fails them (the run deviates), it is never only a logged warning.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from chaoslib.types import Configuration, Secrets

from chaoshelius import registry, windows
from chaoshelius.config import HarnessConfig
from chaoshelius.exceptions import TargetError
from chaoshelius.model.derive import DIGEST_CHARS, derive, digest
from chaoshelius.topology import MODEL_ALIAS, MODEL_NAME

__all__ = ["DIGEST_CHARS", "PROMOTIONS", "promote_model"]

PROMOTIONS = "promotions"  # the windows' details key of what promote_model did
_SEED_BASE = 1000  # the promoted model's seed: _SEED_BASE + the version it replaces
ARTIFACT_FILE = "reco.npz"  # the file of a version's source the service loads
_EXPERIMENT = "0"  # MLflow's default experiment, when the champion has no run
_FORMAT_TAG = {"key": "helius.format", "value": "npz-v1"}  # as helius_reco.train tags it


def promote_model(
    model_name: str = MODEL_NAME,
    alias: str = MODEL_ALIAS,
    seed: int | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Register a new, different version of `model_name` (the current one's artifact with its
    scores scaled by a factor from `seed`; default seed: 1000 + the version `alias` points at
    now), and move `alias` to it.

    Returns `{"model", "alias", "from_version", "to_version", "digest", "seed",
    "promoted_at"}` (`digest`: the short sha256 of the new artifact, as the service reports it
    in `model_digest`). Raises TargetError when anything fails; either way the outcome is noted
    on the open fault windows for the probes.
    """
    config = HarnessConfig.from_chaos(configuration)
    try:
        result = _promote(config, model_name, alias, seed)
    except Exception as exc:
        windows.note_open_windows(
            config.helius_run_dir, PROMOTIONS, {"ok": False, "error": str(exc), "at": time.time()}
        )
        raise
    windows.note_open_windows(config.helius_run_dir, PROMOTIONS, {"ok": True, **result})
    return result


def _promote(
    config: HarnessConfig, model_name: str, alias: str, seed: int | None
) -> dict[str, Any]:
    base = config.helius_mlflow_url.rstrip("/")
    with httpx.Client(base_url=base, timeout=config.helius_http_timeout_seconds) as client:
        current = registry.champion(client, model_name, alias)
        from_version = str(current["version"])
        if seed is None:
            seed = _SEED_BASE + int(from_version) if from_version.isdigit() else _SEED_BASE
        artifact = derive(registry.get_artifact(client, current["source"], ARTIFACT_FILE), seed)
        new_digest = digest(artifact)
        version = _register(client, model_name, current, artifact, seed)
        if version == from_version:
            raise TargetError(f"MLflow gave {model_name} no new version (still {version})")
        registry.call(
            client, "POST", registry.ALIAS, json={"name": model_name, "alias": alias,
                                                  "version": version}
        )  # fmt: skip
    return {
        "model": model_name,
        "alias": alias,
        "from_version": from_version,
        "to_version": version,
        "digest": new_digest,
        "seed": seed,
        "promoted_at": time.time(),
    }


def _register(
    client: httpx.Client, model_name: str, current: dict[str, Any], artifact: bytes, seed: int
) -> str:
    """Log `artifact` in a new run (the champion's experiment) as `model/reco.npz`, as the
    service's trainer does, and register it as a new version of `model_name`; its number."""
    experiment = _EXPERIMENT
    if current.get("run_id"):
        run = registry.call(client, "GET", "/runs/get", params={"run_id": current["run_id"]})
        experiment = str(run["run"]["info"]["experiment_id"])
    started = int(time.time() * 1000)
    info = registry.call(
        client, "POST", "/runs/create",
        json={"experiment_id": experiment, "run_name": f"{model_name}-promote-{seed}",
              "start_time": started},
    )["run"]["info"]  # fmt: skip
    source = f"{info['artifact_uri'].rstrip('/')}/model"
    registry.put_artifact(client, source, ARTIFACT_FILE, artifact)
    registry.call(
        client, "POST", "/runs/update",
        json={"run_id": info["run_id"], "status": "FINISHED",
              "end_time": int(time.time() * 1000)},
    )  # fmt: skip
    tags = [_FORMAT_TAG, {"key": "helius.promoted_from", "value": str(current["version"])},
            {"key": "helius.seed", "value": str(seed)}]  # fmt: skip
    created = registry.call(
        client, "POST", "/model-versions/create",
        json={"name": model_name, "source": source, "run_id": info["run_id"], "tags": tags},
    )  # fmt: skip
    return str(created["model_version"]["version"])
