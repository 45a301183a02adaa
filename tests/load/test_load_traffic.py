"""Unit tests of the traffic model and content checks (loadtests/helius_traffic.py, no Locust)."""

from __future__ import annotations

import importlib.util
import random
import socket
import sys
from collections import Counter
from types import ModuleType
from typing import Any

import pytest
import requests
from load_helpers import REPO


def _load_traffic() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "helius_traffic", REPO / "loadtests" / "helius_traffic.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["helius_traffic"] = module
    spec.loader.exec_module(module)
    return module


traffic = _load_traffic()


def good_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": "u0001",
        "items": [{"item_id": "i0002", "score": 0.9}, {"item_id": "i0003", "score": 0.5}],
        "known_user": True,
        "model_version": "3",
        "model_source": "registry",
    }
    body.update(overrides)
    return body


def test_good_prediction_passes() -> None:
    assert traffic.check_prediction(good_body(), exclude=["i0009"]) is None


@pytest.mark.parametrize(
    ("body", "exclude", "message"),
    [
        (good_body(items=[]), [], "no items"),
        (good_body(items=None), [], "no items"),
        ([1, 2], [], "not a JSON object"),
        (
            good_body(items=[{"item_id": "i1", "score": 0.1}, {"item_id": "i2", "score": 0.2}]),
            [],
            "scores not sorted descending",
        ),
        (good_body(), ["i0003"], "excluded item returned"),
        (good_body(model_version=None), [], "no model_version"),
        (good_body(model_version=""), [], "no model_version"),
        (good_body(items=[{"item_id": "i1", "score": "high"}]), [], "numeric score"),
        (good_body(items=[{"score": 1.0}]), [], "without item_id"),
        (
            good_body(items=[{"item_id": "i1", "score": 1}, {"item_id": "i1", "score": 1}]),
            [],
            "duplicate item",
        ),
    ],
)
def test_bad_predictions_are_bad_content(body: Any, exclude: list[str], message: str) -> None:
    failure = traffic.check_prediction(body, exclude)
    assert failure is not None
    assert failure.reason == "bad_content"
    assert message in str(failure)


def test_health_keys_are_checked() -> None:
    body = {
        "status": "ok",
        "service": "s",
        "version": "v",
        "mlflow_connected": False,
        "model_version": None,
    }
    assert traffic.check_health(body) is None
    assert traffic.check_health({"status": "ok"}) is not None


@pytest.mark.parametrize(
    ("exception", "status", "reason"),
    [
        (None, 200, "ok"),
        (traffic.ClientFailure("bad_content", "x"), 200, "bad_content"),
        (requests.exceptions.ReadTimeout("read timed out"), 0, "timeout"),
        (requests.exceptions.ConnectTimeout("connect timed out"), 0, "timeout"),
        (ConnectionRefusedError(111, "refused"), 0, "connection"),
        (requests.exceptions.ConnectionError("refused"), 0, "connection"),
        (requests.exceptions.HTTPError("503 Server Error"), 503, "http_5xx"),
        (requests.exceptions.HTTPError("404"), 404, "http_4xx"),
        (ValueError("something else"), 200, "other"),
    ],
)
def test_classify(exception: BaseException | None, status: int, reason: str) -> None:
    assert traffic.classify(exception, status) == reason
    assert reason in traffic.REASONS


def test_classify_real_transport_errors() -> None:
    """Errors from real sockets, with the exception chains requests/urllib3 really build."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(requests.RequestException) as refused:
        requests.get(f"http://127.0.0.1:{port}/predict", timeout=2)
    assert traffic.classify(refused.value, 0) == "connection"

    with socket.socket() as silent:  # accepts (kernel backlog) and never answers: a hung server
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/predict"
        with pytest.raises(requests.RequestException) as hung:
            requests.get(url, timeout=0.2)
    assert traffic.classify(hung.value, 0) == "timeout"


def test_status_checks() -> None:
    assert traffic.check_status(200) is None
    assert traffic.check_status(0) is None  # transport errors are classified elsewhere
    assert traffic.check_status(503).reason == "http_5xx"
    assert traffic.check_status(422).reason == "http_4xx"


def test_users_are_skewed_with_a_cold_start_share() -> None:
    picker = traffic.UserPicker(rng=random.Random(7))
    draws = [picker.pick() for _ in range(20_000)]
    unknown = [u for u in draws if not u.startswith("u")]
    known = Counter(u for u in draws if u.startswith("u"))
    assert 0.03 < len(unknown) / len(draws) < 0.07
    assert all(u.startswith("x") and len(u) == 9 for u in unknown)
    assert all(0 <= int(u[1:]) < traffic.KNOWN_USERS for u in known)
    top = known.most_common()
    total = sum(known.values())
    # Zipf(1.1) over 2,000 users: the top user ~ 1/H = 14 %, the top 10 % of users > 60 %
    assert top[0][1] / total > 0.08
    assert sum(c for _, c in top[: traffic.KNOWN_USERS // 10]) / total > 0.6
    assert len(known) > 300  # a long tail, not a handful of users
    assert top[0][0] != "u0000"  # ranks are permuted over ids


def test_request_body_matches_the_service_schema() -> None:
    schemas = pytest.importorskip("helius_reco.api.schemas")
    body = traffic.predict_body("u0001", 5, ["i0001"])
    request = schemas.PredictRequest.model_validate(body)  # extra keys would be rejected
    assert (request.user_id, request.k, request.exclude) == ("u0001", 5, ["i0001"])


def test_user_and_item_space_match_the_training_data() -> None:
    data = pytest.importorskip("helius_reco.model.data")
    spec = data.DatasetSpec()
    assert (spec.n_users, spec.n_items) == (traffic.KNOWN_USERS, traffic.KNOWN_ITEMS)
    assert data.user_id(7) == traffic.user_id(7)
    assert data.item_id(7) == traffic.item_id(7)
