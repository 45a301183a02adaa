"""A stand-in for the recommender: stdlib HTTP server on an ephemeral port with switchable modes.

Modes: "ok" (good answers), "bad_content" (scores ascending), "fail" (HTTP 500),
"slow" (answers after `slow_seconds`), "excluded" (returns an excluded item).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeReco:
    def __init__(self) -> None:
        self.mode = "ok"
        self.slow_seconds = 1.5
        self.users: Counter[str] = Counter()
        self.with_exclusions = 0
        self.ks: Counter[int] = Counter()
        self.paths: Counter[str] = Counter()  # every request, by path
        self.connections = 0  # TCP connections accepted
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with fake._lock:
                    fake.connections += 1

            def _send(self, status: int, body: Any) -> None:
                with fake._lock:
                    fake.paths[self.path] += 1
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/health":
                    self._send(200, fake.health())
                else:
                    self._send(404, {"detail": "not found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                request = json.loads(self.rfile.read(length) or b"{}")
                if self.path != "/predict":
                    self._send(404, {"detail": "not found"})
                    return
                status, body = fake.predict(request)
                self._send(status, body)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients that time out close their end: broken pipes are expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeReco:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "service": "helius-reco",
            "version": "test",
            "mlflow_connected": False,
            "model_version": "baseline",
        }

    def predict(self, request: dict[str, Any]) -> tuple[int, Any]:
        if set(request) - {"user_id", "k", "exclude"} or "user_id" not in request:
            return 422, {"detail": "bad request body"}  # like PredictRequest(extra="forbid")
        exclude = list(request.get("exclude") or [])
        k = int(request.get("k", 10))
        with self._lock:
            self.users[str(request.get("user_id"))] += 1
            self.ks[k] += 1
            self.with_exclusions += bool(exclude)
        mode = self.mode
        if mode == "fail":
            return 500, {"detail": "boom"}
        if mode == "slow":
            time.sleep(self.slow_seconds)
        candidates = [f"i{i:04d}" for i in range(100) if f"i{i:04d}" not in exclude]
        items = [{"item_id": c, "score": 1.0 - n / 100} for n, c in enumerate(candidates[:k])]
        if mode == "bad_content":
            items.reverse()
        if mode == "excluded" and exclude:
            items[0]["item_id"] = exclude[0]
        return 200, {
            "user_id": request.get("user_id"),
            "items": items,
            "model_version": "baseline",
            "model_source": "baseline",
        }
