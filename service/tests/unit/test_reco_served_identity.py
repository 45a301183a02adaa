"""Every /predict answer names the model object that produced it and the pod that answered."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from helius_reco.api.routes.predict import POD_HEADER
from helius_reco.core.config import Settings
from helius_reco.lifecycle.store import ModelSource, ServedModel
from helius_reco.main import create_app
from helius_reco.model.artifact import decode
from helius_reco.model.recommender import DIGEST_CHARS
from test_reco_api import wait_until


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(cache_dir=tmp_path / "cache", pod_name="helius-reco-abcde")


@pytest.fixture
def served(settings, make_refresher, fake_registry, artifact) -> Iterator[tuple[TestClient, Any]]:
    fake_registry.publish("3", artifact)
    refresher = make_refresher(interval_seconds=0.05, deadline_seconds=0.5)
    with TestClient(create_app(settings, refresher=refresher)) as client:
        wait_until(lambda: refresher.ready and refresher.store.current.version == "3")
        yield client, refresher


def test_decode_keeps_the_artifact_digest_on_the_model(artifact: bytes) -> None:
    model = decode(artifact)
    assert model.artifact_digest == hashlib.sha256(artifact).hexdigest()[:DIGEST_CHARS]


def test_answer_names_digest_and_pod(served, artifact: bytes) -> None:
    client, _ = served
    response = client.post("/predict", json={"user_id": "u0001"})
    assert response.status_code == 200
    assert response.headers[POD_HEADER] == "helius-reco-abcde"
    assert response.json()["model_digest"] == hashlib.sha256(artifact).hexdigest()[:DIGEST_CHARS]


def test_a_label_moved_without_the_model_keeps_the_old_digest(served, artifact: bytes) -> None:
    client, refresher = served
    current = refresher.store.current
    refresher.stop()
    refresher.store.swap(ServedModel(current.model, "4", ModelSource.REGISTRY, "f" * 64))
    body = client.post("/predict", json={"user_id": "u0001"}).json()
    assert body["model_version"] == "4"
    assert body["model_digest"] == hashlib.sha256(artifact).hexdigest()[:DIGEST_CHARS]


def test_openapi_documents_the_digest_and_the_pod_header(served) -> None:
    client, _ = served
    spec = client.get("/openapi.json").json()
    assert "model_digest" in spec["components"]["schemas"]["PredictResponse"]["required"]
    ok = spec["paths"]["/predict"]["post"]["responses"]["200"]
    assert POD_HEADER in ok["headers"]
