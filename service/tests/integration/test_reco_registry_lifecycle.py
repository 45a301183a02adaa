"""The service against a real `mlflow server` on a real PostgreSQL: registry up, MLflow killed,
MLflow back with a new version, cold starts with MLflow down, a hostile artifact, and how long
one refresh takes against a dead and a hung MLflow."""

from __future__ import annotations

import json
import pickle
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helius_reco.core.config import Settings
from helius_reco.lifecycle.cache import ModelCache
from helius_reco.lifecycle.refresher import Refresher
from helius_reco.lifecycle.registry import MlflowRegistry
from helius_reco.lifecycle.store import ModelStore
from helius_reco.metrics import Metrics
from helius_reco.model.artifact import encode
from helius_reco.model.data import DatasetSpec, generate
from helius_reco.model.training import fit
from helius_reco.train import register
from polling import wait_for
from prometheus_client import CollectorRegistry

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

INTERVAL = 1.0  # HELIUS_REFRESH_INTERVAL_SECONDS of the service under test
DEADLINE = 5.0


def publish(url: str, name: str, seed: int = 20261125) -> str:
    model = fit(generate(DatasetSpec(seed=seed)))
    version, _ = register(
        url, encode(model), model.fingerprint(), model_name=name, alias="champion", params={}
    )
    return version


def test_outage_and_recovery(mlflow, start_service, tmp_path: Path) -> None:
    name = "reco-outage"
    v1 = publish(mlflow.url, name)
    service = start_service(mlflow.url, HELIUS_MODEL_NAME=name)
    service.wait_ready()
    health = service.health()
    assert health["mlflow_connected"] is True
    assert (health["model_version"], health["model_source"]) == (v1, "registry")
    assert service.metric("reco_engine_in_fallback_mode") == 0
    assert service.predict().json()["model_source"] == "registry"

    # MLflow killed: fallback within interval + deadline, and every prediction still answered
    mlflow.kill()
    statuses: list[int] = []

    def in_fallback() -> bool:
        statuses.append(service.predict().status_code)
        return service.metric("reco_engine_in_fallback_mode") == 1

    took = wait_for(in_fallback, INTERVAL + DEADLINE, "fallback gauge 1 after MLflow kill")
    print(f"fallback engaged {took:.2f} s after the kill")
    assert statuses and set(statuses) == {200}
    health = service.health()
    assert health["mlflow_connected"] is False and health["model_version"] == v1
    answers = [service.predict(f"u{i:04d}") for i in range(20)]
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["model_version"] for a in answers} == {v1}
    assert (service.metric("reco_engine_refresh_failures_total", reason="unavailable") or 0) >= 1

    # MLflow back, a new version aliased: picked up and the gauge clears
    mlflow.up()
    v2 = publish(mlflow.url, name, seed=7)
    assert v2 != v1
    wait_for(lambda: service.health()["model_version"] == v2, 30, "new version served")
    assert service.metric("reco_engine_in_fallback_mode") == 0
    assert service.metric("reco_engine_model_info", version=v2, source="registry") == 1
    meta = json.loads((tmp_path / "cache" / "meta.json").read_text())
    assert meta["version"] == v2


def test_cold_start_with_mlflow_down(mlflow, start_service, tmp_path: Path) -> None:
    name = "reco-cold"
    version = publish(mlflow.url, name)
    warm = start_service(mlflow.url, HELIUS_MODEL_NAME=name)
    warm.wait_ready()
    assert warm.health()["model_source"] == "registry"
    warm.stop()
    mlflow.kill()

    from_cache = start_service(mlflow.url, HELIUS_MODEL_NAME=name)  # same cache dir
    from_cache.wait_live(timeout=20)
    health = from_cache.health()
    assert (health["model_source"], health["model_version"]) == ("cache", version)
    assert health["mlflow_connected"] is False
    from_cache.wait_ready(timeout=DEADLINE + 5)
    assert from_cache.metric("reco_engine_in_fallback_mode") == 1
    assert from_cache.predict().json()["model_source"] == "cache"

    bare = start_service(mlflow.url, cache_dir=tmp_path / "empty", HELIUS_MODEL_NAME=name)
    bare.wait_live(timeout=20)
    assert bare.health()["model_source"] == "baseline"
    bare.wait_ready(timeout=DEADLINE + 5)
    answer = bare.predict().json()
    assert answer["model_version"] == "baseline" and len(answer["items"]) == 5


class _Hostile:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(self.path),))


def test_hostile_artifact_is_rejected(mlflow, start_service, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    name = "reco-hostile"
    good = publish(mlflow.url, name)
    service = start_service(mlflow.url, HELIUS_MODEL_NAME=name)
    service.wait_ready()
    marker = tmp_path / "pwned"
    bad, _ = register(
        mlflow.url,
        pickle.dumps(_Hostile(str(marker))),
        "hostile",
        model_name=name,
        alias="champion",
        params={},
        new_version=True,
    )
    wait_for(
        lambda: (service.metric("reco_engine_artifact_rejected_total") or 0) >= 1,
        INTERVAL + DEADLINE + 5,
        "artifact rejected",
    )
    assert service.health()["model_version"] == good
    assert service.metric("reco_engine_in_fallback_mode") == 1
    assert f"artifact of version {bad} rejected" in service.log()
    assert service.predict().status_code == 200
    assert not marker.exists()

    MlflowClient(mlflow.url).set_registered_model_alias(name, "champion", good)
    wait_for(lambda: service.metric("reco_engine_in_fallback_mode") == 0, 10, "gauge back to 0")


def test_train_cli_is_idempotent(mlflow) -> None:
    argv = [sys.executable, "-m", "helius_reco.train", "--tracking-uri", mlflow.url,
            "--model-name", "reco-cli"]  # fmt: skip

    def run() -> dict[str, object]:
        done = subprocess.run(  # noqa: S603  argv list, no shell: our trainer
            argv, capture_output=True, check=True, timeout=120, text=True
        )
        result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    first, second = run(), run()
    assert first["created"] is True and second["created"] is False
    assert first["version"] == second["version"]


@pytest.mark.parametrize("kind", ["dead", "hung"])
def test_one_refresh_gives_up_within_the_deadline(
    kind: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Against a port nobody listens on, and one that accepts connections but never answers."""
    settings = Settings()
    for key in settings.mlflow_client_env():  # restored after the test
        monkeypatch.setenv(key, "0")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        if kind == "hung":
            sock.listen(128)
        port = sock.getsockname()[1]
        registry = MlflowRegistry(
            f"http://127.0.0.1:{port}", "reco", "champion", client_env=settings.mlflow_client_env()
        )
        refresher = Refresher(
            ModelStore(),
            registry,
            ModelCache(tmp_path),
            Metrics(CollectorRegistry()),
            interval_seconds=INTERVAL,
            deadline_seconds=DEADLINE,
        )
        refresher.load_local()
        if kind == "dead":
            sock.close()
        started = time.monotonic()
        outcome = refresher.refresh_once()
        took = time.monotonic() - started
    print(f"refresh against {kind} MLflow: {outcome.reason} after {took:.2f} s")
    assert not outcome.ok and outcome.reason in {"unavailable", "timeout"}
    assert took <= DEADLINE + 0.5
    assert refresher.store.current is not None  # still serving (the baseline here)
