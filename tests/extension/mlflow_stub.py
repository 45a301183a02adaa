"""A stub of MLflow's model registry REST API: the calls `chaoshelius.model.actions
.promote_model` makes and the alias lookup `models_converged_within` asks, on 127.0.0.1
port 0.

It keeps one piece of state, the version `reco@champion` points at ("1" at the start): a
promotion (create a version, set the alias) moves it, and every later GET answers with it,
as the real registry would. Used by the target=kubernetes end-to-end tests, where no MLflow
runs behind the fake API server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

from http_stub import reply, serve


class Registry:
    """The stub's state: the alias's version and the promotions (set-alias bodies) received."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.version = "1"
        self.promoted: list[dict[str, Any]] = []

    def current(self) -> str:
        with self.lock:
            return self.version


class _Handler(BaseHTTPRequestHandler):
    registry: Registry  # set on the per-server subclass

    def _answer(self, body: dict[str, Any]) -> None:
        reply(self, json.dumps(body).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802  http.server's spelling
        version = self.registry.current()
        source = f"mlflow-artifacts:/1/model-v{version}"
        self._answer({"model_version": {"version": version, "source": source, "run_id": "r1"}})

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["content-length"])) or b"{}")
        if self.path.endswith("/model-versions/create"):
            new = str(int(self.registry.current()) + 1)
            self._answer({"model_version": {"version": new, "status": "READY"}})
        else:  # registered-models/alias: point the alias at the new version
            with self.registry.lock:
                self.registry.promoted.append(body)
                self.registry.version = str(body.get("version", self.registry.version))
            self._answer({})

    def log_message(self, *args: object) -> None:
        return


@contextmanager
def serve_registry() -> Iterator[tuple[Registry, str]]:
    """A fresh registry stub; yields it and its base URL."""
    registry = Registry()
    handler = type("Handler", (_Handler,), {"registry": registry})
    server, url = serve(handler)
    try:
        yield registry, url
    finally:
        server.shutdown()
        server.server_close()
