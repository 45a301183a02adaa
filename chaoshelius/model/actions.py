"""Promote a new model version in MLflow (a state change, not a fault: it is not undone).

Used by model-promoted-during-partition: a release pipeline moves `reco@champion` while the
recommenders cannot reach MLflow, and every pod must converge on it once they can. The new
version is a *different* artifact (the service's trainer, `helius_reco.train`, run with another
seed), so what the pods serve can be told apart by its digest, not only by a version label.
The trainer talks to MLflow at `helius_mlflow_url` (local stack: its MLflow service proxy; a
cluster: the MLflow your runner can reach) and needs `helius_reco` installed where the
experiment runs.

What the promotion gave (version and artifact digest), or why it failed, is noted on the fault
windows open at the time (`details["promotions"]`), where the served-model probes read it: a
failed promotion fails them (the run deviates), it is never only a logged warning.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from chaoslib.types import Configuration, Secrets

from chaoshelius import registry, windows
from chaoshelius.config import HarnessConfig
from chaoshelius.exceptions import TargetError
from chaoshelius.topology import MODEL_ALIAS, MODEL_NAME

__all__ = ["PROMOTIONS", "promote_model"]

PROMOTIONS = "promotions"  # the windows' details key of what promote_model did
_TRAIN_TIMEOUT_SECONDS = 120.0
_SEED_BASE = 1000  # the promoted model's seed: _SEED_BASE + the version it replaces
DIGEST_CHARS = 12  # as the service names an artifact (helius_reco.model.recommender)


def promote_model(
    model_name: str = MODEL_NAME,
    alias: str = MODEL_ALIAS,
    seed: int | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Train and register a new, different version of `model_name` (another `seed`; default:
    1000 + the version `alias` points at now), and move `alias` to it.

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
    with tempfile.TemporaryDirectory(prefix="helius-promote-") as tmp:
        artifact = Path(tmp) / "reco.npz"
        trained = _train(base, model_name, alias, seed, artifact)
        digest = hashlib.sha256(artifact.read_bytes()).hexdigest()[:DIGEST_CHARS]
    version = str(trained.get("version", ""))
    if not version or version == from_version:
        raise TargetError(
            f"promotion did not register a new version of {model_name} (trainer said {trained})"
        )
    return {
        "model": model_name,
        "alias": alias,
        "from_version": from_version,
        "to_version": version,
        "digest": digest,
        "seed": seed,
        "promoted_at": time.time(),
    }


def _train(base: str, model_name: str, alias: str, seed: int, artifact: Path) -> dict[str, Any]:
    """Run the service's trainer: register the artifact it writes to `artifact`, move `alias`."""
    argv = [
        sys.executable, "-m", "helius_reco.train", "--tracking-uri", base,
        "--model-name", model_name, "--alias", alias, "--seed", str(seed),
        "--new-version", "--output", str(artifact),
    ]  # fmt: skip
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and module, no shell
            argv, capture_output=True, text=True, timeout=_TRAIN_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise TargetError(f"training the promoted model took over {exc.timeout:g} s") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise TargetError(f"training the promoted model failed ({done.returncode}): {tail}")
    try:
        answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        raise TargetError(f"the trainer printed no result: {done.stdout[-200:]!r}") from exc
    return answer
