"""`/predict` bounds what a request can cost: the body is refused with a 413 before it is held
in memory (announced length or counted chunks), and a 422 never echoes the input back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from helius_reco.core.config import Settings
from helius_reco.main import create_app
from peak_memory import MiB, traced_peak
from starlette.types import Message

DEFAULT_LIMIT = Settings().max_request_body_bytes


def _app(tmp_path: Path, make_refresher, fake_registry, artifact: bytes, **settings) -> FastAPI:
    fake_registry.publish("3", artifact)
    return create_app(
        Settings(cache_dir=tmp_path / "cache", **settings), refresher=make_refresher()
    )


@pytest.fixture
def app(tmp_path: Path, make_refresher, fake_registry, artifact: bytes) -> FastAPI:
    return _app(tmp_path, make_refresher, fake_registry, artifact)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def _huge_exclude_body(size: int) -> bytes:
    """A JSON PredictRequest of about `size` bytes: one user, a very long exclude list."""
    count = (size - 40) // 9
    return b'{"user_id": "u0001", "exclude": [' + b'"i0000", ' * count + b'"i0001"]}'


# -- the size cap ---------------------------------------------------------------------------


def test_default_limit_fits_the_largest_valid_request() -> None:
    # 1000 excluded ids of 128 characters, each character escaped as \\uXXXX: 6 bytes
    largest = {"user_id": "u" * 128, "k": 100, "exclude": ["\u00e9" * 128] * 1000}
    body = json.dumps(largest, ensure_ascii=True).encode()
    assert len(body) < DEFAULT_LIMIT <= 2 * MiB


def test_40_mb_body_is_413_naming_the_limit_and_costs_no_memory(client: TestClient) -> None:
    body = _huge_exclude_body(40 * MiB)
    with traced_peak() as peak:
        response = client.post(
            "/predict", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    assert str(DEFAULT_LIMIT) in response.json()["detail"]
    assert len(response.content) < 300
    # refused from its Content-Length: the app never reads it (parsing it took ~100 MB)
    assert len(body) > 40_000_000
    assert peak.bytes < 8 * MiB, f"{peak.bytes} bytes traced for a refused body"


def test_body_at_the_limit_is_read_one_byte_over_is_not(
    tmp_path: Path, make_refresher, fake_registry, artifact: bytes
) -> None:
    app = _app(tmp_path, make_refresher, fake_registry, artifact, max_request_body_bytes=200)
    payload = b'{"user_id": "u0001", "k": 3}'
    exact = payload + b" " * (200 - len(payload))
    headers = {"content-type": "application/json"}
    with TestClient(app) as client:
        assert client.post("/predict", content=exact, headers=headers).status_code == 200
        over = client.post("/predict", content=exact + b" ", headers=headers)
    assert over.status_code == 413 and "200-byte" in over.json()["detail"]


@dataclass
class ChunkedBody:
    """An ASGI `receive` handing out a body of `total` bytes in `chunk`-sized messages, made
    on demand, with no Content-Length: what a server passes on for `Transfer-Encoding:
    chunked`. It counts what the app actually took."""

    total: int
    chunk: int = 64 * 1024
    taken: int = 0
    sent: list[Message] = field(default_factory=list)

    async def receive(self) -> Message:
        size = min(self.chunk, self.total - self.taken)
        self.taken += size
        more = self.taken < self.total
        return {"type": "http.request", "body": b" " * size, "more_body": more}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


def _call(app: FastAPI, stream: ChunkedBody) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    asyncio.run(app(scope, stream.receive, stream.send))


def test_chunked_40_mb_body_is_refused_while_it_streams(client: TestClient, app: FastAPI) -> None:
    stream = ChunkedBody(total=40 * MiB)
    with traced_peak() as peak:
        _call(app, stream)
    assert stream.status == 413 and str(DEFAULT_LIMIT) in json.loads(stream.body)["detail"]
    assert stream.taken <= DEFAULT_LIMIT + stream.chunk, f"read {stream.taken} bytes"
    assert peak.bytes < DEFAULT_LIMIT + 2 * MiB, f"{peak.bytes} bytes traced"


def test_chunked_body_under_the_limit_is_read_whole(client: TestClient, app: FastAPI) -> None:
    stream = ChunkedBody(total=300 * 1024)  # only spaces: read whole, then invalid JSON
    _call(app, stream)
    assert stream.taken == stream.total and stream.status == 422


# -- what a 422 says ----------------------------------------------------------------------------


def test_5_mb_invalid_body_gets_a_small_422_naming_the_field(
    tmp_path: Path, make_refresher, fake_registry, artifact: bytes
) -> None:
    app = _app(tmp_path, make_refresher, fake_registry, artifact, max_request_body_bytes=8 * MiB)
    with TestClient(app) as client:
        for payload, field_ in (
            ({"user_id": "u" * (5 * MiB)}, "user_id"),
            ({"user_id": "u0001", "exclude": ["i0000"] * 600_000}, "exclude"),
        ):
            response = client.post("/predict", json=payload)
            assert response.status_code == 422
            assert len(response.content) < 1000, response.content[:300]
            assert response.json()["detail"][0]["loc"] == ["body", field_]
            assert "input" not in response.json()["detail"][0]


def test_many_errors_are_summarised(client: TestClient) -> None:
    payload = {"user_id": "u0001"} | {f"unknown{i}": 1 for i in range(50_000)}
    response = client.post("/predict", json=payload)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert len(response.content) < 3000 and len(detail) <= 11
    assert detail[0]["loc"] == ["body", "unknown0"] and detail[0]["type"] == "extra_forbidden"
    assert detail[-1]["type"] == "too_many_errors" and "49990 more" in detail[-1]["msg"]


def test_a_huge_field_name_is_not_echoed(client: TestClient) -> None:
    name = "x" * 500_000
    response = client.post("/predict", json={"user_id": "u0001", name: 1})
    assert response.status_code == 422 and len(response.content) < 1000
    loc = response.json()["detail"][0]["loc"]
    assert loc[0] == "body" and loc[1].startswith("xxx") and len(loc[1]) <= 64
