"""Routes and request metrics, through the app factory with injected components."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from helius_reco.core.config import Settings
from helius_reco.exceptions import RegistryError
from helius_reco.main import create_app
from prometheus_client import CollectorRegistry

REQUIRED_METRICS = (
    "reco_engine_requests_total",
    "reco_engine_requests_latency_seconds",
    "reco_engine_in_fallback_mode",
    "reco_engine_model_info",
    "reco_engine_refresh_failures_total",
    "reco_engine_last_successful_refresh_timestamp_seconds",
    "reco_engine_artifact_rejected_total",
    "reco_engine_requests_in_flight",
)


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.01)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        cache_dir=tmp_path / "cache",
        refresh_interval_seconds=0.05,
        refresh_deadline_seconds=0.5,
        pod_name="helius-reco-abcde",
        zone="zone-b",
    )


@pytest.fixture
def client(settings: Settings, make_refresher, fake_registry, artifact) -> Iterator[TestClient]:
    fake_registry.publish("3", artifact)
    refresher = make_refresher(interval_seconds=0.05, deadline_seconds=0.5)
    app = create_app(settings, refresher=refresher)
    with TestClient(app) as test_client:
        wait_until(lambda: refresher.ready)
        yield test_client


def value(client: TestClient, name: str, **labels: str) -> float | None:
    registry = client.app.state.components.metrics.registry  # type: ignore[attr-defined]
    return registry.get_sample_value(name, labels or None)


def test_health_reports_registry_model(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["service"] == "helius-reco-service"
    assert body["mlflow_connected"] is True and body["model_version"] == "3"
    assert body["model_source"] == "registry" and body["fallback_mode"] is False
    assert body["pod"] == "helius-reco-abcde" and body["zone"] == "zone-b"
    assert body["version"]


def test_health_stays_200_with_registry_down(client: TestClient, fake_registry) -> None:
    fake_registry.failure = RegistryError("refused", reason="unavailable")
    wait_until(lambda: client.get("/health").json()["mlflow_connected"] is False)
    response = client.get("/health")
    assert response.status_code == 200 and response.json()["fallback_mode"] is True
    assert client.get("/ready").status_code == 200  # the model in memory still serves


def test_cold_start_with_registry_down_is_live_and_ready_on_baseline(
    settings: Settings, make_refresher, fake_registry
) -> None:
    fake_registry.failure = RegistryError("refused", reason="unavailable")
    refresher = make_refresher()
    with TestClient(create_app(settings, refresher=refresher)) as client:
        wait_until(lambda: refresher.ready)
        body = client.get("/health").json()
        assert body["mlflow_connected"] is False and body["model_version"] == "baseline"
        assert client.get("/ready").status_code == 200
        answer = client.post("/predict", json={"user_id": "u0001"}).json()
        assert answer["model_source"] == "baseline" and len(answer["items"]) == 10


def test_ready_is_503_until_the_first_registry_attempt_concludes(
    settings: Settings, make_refresher, fake_registry, artifact
) -> None:
    fake_registry.publish("3", artifact)
    fake_registry.hang = threading.Event()
    refresher = make_refresher(deadline_seconds=10)
    with TestClient(create_app(settings, refresher=refresher)) as client:
        assert client.get("/health").status_code == 200
        response = client.get("/ready")
        assert response.status_code == 503 and response.json()["ready"] is False
        fake_registry.hang.set()
        wait_until(lambda: client.get("/ready").status_code == 200)
        assert client.get("/ready").json()["model_source"] == "registry"


def test_predict_known_user(client: TestClient) -> None:
    response = client.post("/predict", json={"user_id": "u0001", "k": 5, "exclude": ["i0000"]})
    assert response.status_code == 200
    body = response.json()
    assert body["known_user"] is True and body["model_version"] == "3"
    assert body["model_source"] == "registry"
    ids = [item["item_id"] for item in body["items"]]
    assert len(ids) == 5 and "i0000" not in ids
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_predict_unknown_user_gets_popular_items(client: TestClient) -> None:
    body = client.post("/predict", json={"user_id": "someone-new"}).json()
    assert body["known_user"] is False and len(body["items"]) == 10


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({}, ["body", "user_id"]),
        ({"user_id": ""}, ["body", "user_id"]),
        ({"user_id": 42}, ["body", "user_id"]),
        ({"user_id": "u1", "k": 0}, ["body", "k"]),
        ({"user_id": "u1", "k": 101}, ["body", "k"]),
        ({"user_id": "u1", "k": "ten"}, ["body", "k"]),
        ({"user_id": "u1", "exclude": "i0001"}, ["body", "exclude"]),
        ({"user_id": "u1", "num": 3}, ["body", "num"]),
        (["u1"], ["body"]),
    ],
)
def test_malformed_input_is_422_with_the_field_named(client: TestClient, payload, where) -> None:
    response = client.post("/predict", json=payload)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == where


def test_invalid_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/predict", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


def test_predict_never_calls_the_registry(client: TestClient, fake_registry) -> None:
    client.app.state.components.refresher.stop()  # type: ignore[attr-defined]
    calls = (fake_registry.resolve_calls, fake_registry.fetch_calls)
    fake_registry.hang = threading.Event()  # a call now would block the request
    for i in range(50):
        assert client.post("/predict", json={"user_id": f"u{i:04d}"}).status_code == 200
    assert (fake_registry.resolve_calls, fake_registry.fetch_calls) == calls


def test_request_metrics(client: TestClient) -> None:
    for _ in range(3):
        client.post("/predict", json={"user_id": "u0001"})
    client.post("/predict", json={"user_id": 1})
    client.get("/no/such/path")
    assert (
        value(client, "reco_engine_requests_total", route="/predict", method="POST", status="200")
        == 3
    )
    assert (
        value(client, "reco_engine_requests_total", route="/predict", method="POST", status="422")
        == 1
    )
    assert (
        value(client, "reco_engine_requests_total", route="unmatched", method="GET", status="404")
        == 1
    )
    assert value(client, "reco_engine_requests_latency_seconds_count", route="/predict") == 4
    assert value(client, "reco_engine_requests_in_flight") == 0


def test_metrics_endpoint_exposes_the_contract_names(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    for name in REQUIRED_METRICS:
        assert f"# HELP {name} " in response.text, name
    assert 'reco_engine_model_info{source="registry",version="3"} 1.0' in response.text
    assert "reco_engine_in_fallback_mode 0.0" in response.text


def test_each_app_has_its_own_registry(settings: Settings) -> None:
    first, second = create_app(settings), create_app(settings)
    assert first.state.components.metrics.registry is not second.state.components.metrics.registry


def test_injected_parts_must_agree(settings: Settings, make_refresher) -> None:
    refresher = make_refresher()
    with pytest.raises(ValueError, match="registry"):
        create_app(settings, refresher=refresher, registry=CollectorRegistry())


def test_undecodable_body_is_422(client: TestClient) -> None:
    response = client.post(
        "/predict", content=b'{"user_id": "\xff\xfe"}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "body_not_decodable"


def test_other_http_errors_keep_their_status(client: TestClient) -> None:
    assert client.get("/predict").status_code == 405


def test_made_up_methods_share_one_bounded_label(client: TestClient) -> None:
    """A permissive HTTP parser passes any token as the method: each one must not become a
    series of its own (issue 17, item 6). Twenty made-up methods add one `other` series."""
    registry = client.app.state.components.metrics.registry  # type: ignore[attr-defined]

    def series() -> set[tuple[tuple[str, str], ...]]:
        return {
            tuple(sorted(s.labels.items()))
            for metric in registry.collect()
            if metric.name == "reco_engine_requests"
            for s in metric.samples
            if s.name == "reco_engine_requests_total"
        }

    before = series()
    for i in range(20):
        client.request(f"MADEUP{i}", "/predict")
    added = series() - before
    assert {dict(s)["method"] for s in added} == {"other"}, added
    assert len(added) <= 1, added
    assert value(client, "reco_engine_requests_total", route="/predict", method="other",
                 status="405") == 20  # fmt: skip
