"""The service proxy's per-connection balancing, on real sockets: three (then four) HTTP/1.1
keep-alive backends behind a TcpProxy, one keep-alive client.

Per connection (kube-proxy) the same client stays on one pod, unready or not: the behaviour
issue 9 found. Per request (an ingress, the recommender's default) is HAProxy now; its tests
(one client connection reaches every ready pod, follows readiness, retries, limits) are in
tests/stack/test_haproxy.py.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from support.ports import free_port

from chaoshelius.stack.proxy import Balancing, RoundRobin, TcpProxy, Upstream


@dataclass
class Backend:
    """An HTTP/1.1 keep-alive server that says its name and counts what it served."""

    name: str
    requests: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    drop_idle: bool = False  # close each connection after one answer, without saying so

    def __post_init__(self) -> None:
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                backend.connections += 1

            def _answer(self, status: int, body: bytes, chunked: bool = False) -> None:
                backend.requests[self.path] += 1
                self.send_response(status)
                self.send_header("X-Pod", backend.name)
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for part in (body[:3], body[3:]):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if status != 204:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD" and status != 204:
                    self.wfile.write(body)
                if backend.drop_idle:
                    self.close_connection = True  # like a keep-alive idle timeout

            def do_GET(self) -> None:
                if self.path == "/empty":
                    self._answer(204, b"")
                else:
                    self._answer(200, backend.name.encode(), chunked=self.path == "/chunked")

            def do_HEAD(self) -> None:
                self._answer(200, backend.name.encode())

            def do_POST(self) -> None:
                if self.headers.get("Transfer-Encoding") == "chunked":
                    body = b""
                    while size := int(self.rfile.readline().strip(), 16):
                        body += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                else:
                    body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self._answer(200, json.dumps({"pod": backend.name, "echo": body.decode()}).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.upstream: Upstream = ("127.0.0.1", self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ProxyHarness:
    """A TcpProxy on its own event loop thread, over a mutable list of ready backends."""

    def __init__(self, balancing: Balancing, ready: list[Backend]) -> None:
        self.ready = ready
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = TcpProxy(
            "reco-service",
            free_port(),
            RoundRobin(lambda: [b.upstream for b in self.ready]),
            balancing=balancing,
        )
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self.loop).result(5)

    def client(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=5)

    def close(self) -> None:
        async def shutdown() -> None:
            await self.proxy.close()
            await asyncio.sleep(0.1)  # let the cancelled connection handlers finish

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def backends() -> Iterator[list[Backend]]:
    pods = [Backend(f"pod-{i}") for i in range(4)]
    yield pods
    for pod in pods:
        pod.stop()


def _harness(balancing: Balancing, ready: list[Backend]) -> Iterator[ProxyHarness]:
    harness = ProxyHarness(balancing, ready)
    yield harness
    harness.close()


@pytest.fixture
def per_connection(backends: list[Backend]) -> Iterator[ProxyHarness]:
    yield from _harness(Balancing.CONNECTION, list(backends[:3]))


def _pods_seen(client: http.client.HTTPConnection, count: int) -> Counter[str]:
    """`count` keep-alive POSTs on one connection; which pod answered each."""
    seen: Counter[str] = Counter()
    for i in range(count):
        client.request("POST", "/predict", body=json.dumps({"i": i}).encode())
        response = client.getresponse()
        body = json.loads(response.read())
        assert response.status == 200
        assert body["echo"] == json.dumps({"i": i})
        assert response.getheader("X-Pod") == body["pod"]
        seen[body["pod"]] += 1
    return seen


def test_per_connection_mode_pins_a_keepalive_client_even_to_an_unready_pod(
    per_connection: ProxyHarness, backends: list[Backend]
) -> None:
    client = per_connection.client()
    seen = _pods_seen(client, 20)
    assert len(seen) == 1  # one pod for the whole connection
    (pinned,) = seen
    per_connection.ready[:] = [b for b in per_connection.ready if b.name != pinned]
    per_connection.ready.append(backends[3])
    assert _pods_seen(client, 20) == {pinned: 20}  # still the unready pod; pod-3 gets nothing
    assert backends[3].requests["/predict"] == 0
    client.close()
    fresh = per_connection.client()  # only a new connection sees the change
    assert pinned not in _pods_seen(fresh, 1)
    fresh.close()


def test_the_recommender_proxy_balances_per_request_by_default_and_says_so() -> None:
    from chaoshelius.cli.stack import _render
    from chaoshelius.stack import api_models as api
    from chaoshelius.stack.config import StackConfig

    assert StackConfig().reco_proxy_balancing == "request"
    assert StackConfig(reco_proxy_balancing="connection").reco_proxy_balancing == "connection"
    status = api.Status.model_validate(
        {
            "phase": "ready",
            "error": None,
            "started_at": 0.0,
            "ready_at": 1.0,
            "profile": {},
            "base_port": 17000,
            "state_dir": "/tmp/x",  # noqa: S108  a path in a request body, never opened
            "endpoints": {},
            "pods": [],
            "faults": [],
            "drained_zones": [],
            "proxies": {
                "mlflow-rds": {"mode": "normal", "balancing": "connection", "open_connections": 0},
                "service:helius-reco": {
                    "mode": "normal",
                    "balancing": "request",
                    "open_connections": 0,
                },
                "service:mlflow": {
                    "mode": "normal",
                    "balancing": "connection",
                    "open_connections": 0,
                },
            },
        }
    )
    rendered = _render(status)
    assert "service proxies balance: helius-reco per request, mlflow per connection" in rendered
