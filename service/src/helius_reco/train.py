"""Train on the synthetic data set, log the artifact to MLflow, register it, move the alias.

    python -m helius_reco.train --tracking-uri http://127.0.0.1:5000 [--model-name reco]
        [--alias champion] [--seed N] [--new-version] [--output PATH] [--write-baseline PATH]

Idempotent: the version is tagged with the model's content fingerprint; if a version of the
model with the same fingerprint exists, it is reused (the alias is pointed at it) instead of
registering a duplicate. `--new-version` registers anyway. Training is deterministic in --seed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from helius_reco.core.config import Settings
from helius_reco.model.artifact import ARTIFACT_FILE, encode
from helius_reco.model.data import DEFAULT_SEED, DatasetSpec, generate
from helius_reco.model.training import DEFAULT_NEIGHBORS, fit, fit_baseline

log = logging.getLogger("helius_reco.train")
FINGERPRINT_TAG = "helius.fingerprint"
EXPERIMENT = "helius-reco"


def register(
    tracking_uri: str,
    artifact: bytes,
    fingerprint: str,
    *,
    model_name: str,
    alias: str,
    params: dict[str, str],
    new_version: bool = False,
    artifact_file: str = ARTIFACT_FILE,
) -> tuple[str, bool]:
    """Log + register `artifact` (unless an equal version exists) and point `alias` at it.

    Returns (version, created). `artifact_file` exists so tests can register a corrupt file
    under the expected name; the service always reads `reco.npz`.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        client.create_registered_model(model_name, description="helius-reco-service model")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    if not new_version:
        for existing in client.search_model_versions(f"name='{model_name}'"):
            if existing.tags.get(FINGERPRINT_TAG) == fingerprint:
                client.set_registered_model_alias(model_name, alias, existing.version)
                return str(existing.version), False
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    run = client.create_run(experiment_id, run_name=f"{model_name}-train")
    run_id = run.info.run_id
    for key, value in params.items():
        client.log_param(run_id, key, value)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / artifact_file
        path.write_bytes(artifact)
        client.log_artifact(run_id, str(path), artifact_path="model")
    client.set_terminated(run_id)
    version = client.create_model_version(
        model_name,
        source=f"{run.info.artifact_uri}/model",
        run_id=run_id,
        tags={FINGERPRINT_TAG: fingerprint, "helius.format": "npz-v1"},
    )
    client.set_registered_model_alias(model_name, alias, version.version)
    return str(version.version), True


def main(argv: Sequence[str] | None = None) -> int:
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m helius_reco.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tracking-uri", help="MLflow tracking server (omit with --output only)")
    parser.add_argument("--model-name", default=defaults.model_name)
    parser.add_argument("--alias", default=defaults.model_alias)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--neighbors", type=int, default=DEFAULT_NEIGHBORS)
    parser.add_argument("--new-version", action="store_true", help="register even if unchanged")
    parser.add_argument("--output", type=Path, help="also write the artifact here")
    parser.add_argument("--write-baseline", type=Path, help="write the popularity baseline here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    spec = DatasetSpec(seed=args.seed)
    data = generate(spec)
    if args.write_baseline:
        args.write_baseline.write_bytes(encode(fit_baseline(data)))
        log.info("baseline written to %s", args.write_baseline)
    model = fit(data, k=args.neighbors)
    artifact = encode(model)
    fingerprint = model.fingerprint()
    if args.output:
        args.output.write_bytes(artifact)
        log.info("artifact written to %s", args.output)
    if not args.tracking_uri:
        if not (args.output or args.write_baseline):
            parser.error("--tracking-uri is required unless --output/--write-baseline is given")
        return 0
    params = {k: str(v) for k, v in asdict(spec).items()} | {"neighbors": str(args.neighbors)}
    version, created = register(
        args.tracking_uri,
        artifact,
        fingerprint,
        model_name=args.model_name,
        alias=args.alias,
        params=params,
        new_version=args.new_version,
    )
    result = {
        "model": args.model_name,
        "alias": args.alias,
        "version": version,
        "created": created,
        "fingerprint": fingerprint,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
