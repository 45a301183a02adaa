"""A stub of MLflow's REST API (tracking, model registry, artifact proxy): the calls
`chaoshelius.model.actions.promote_model` makes and the alias lookup `models_converged_within`
asks, on 127.0.0.1 port 0.

It keeps the registry's state as the real server does: registered versions (source, run),
runs (experiment, artifact URI `mlflow-artifacts:/<experiment>/<run>/artifacts`), the files
uploaded through the artifact proxy (PUT/GET /api/2.0/mlflow-artifacts/artifacts/<path>) and
the version `reco@champion` points at ("1" at the start, a small valid model artifact). A
promotion (read the champion's artifact, create a run, upload, create a version, move the
alias) moves it, and every later GET answers with it. `digest(version)` is the short sha256 of
a version's artifact, the `model_digest` a pod serving it reports. Used by the
target=kubernetes end-to-end tests, where no MLflow runs behind the fake API server.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from support.http import reply, serve

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts/"
ARTIFACT_FILE = "reco.npz"


def small_artifact() -> bytes:
    """A small artifact in the service's exact format (its eight arrays and dtypes)."""
    arrays = {
        "format_version": np.array(1, dtype=np.int64),
        "item_ids": np.array(["i0", "i1", "i2"]),
        "popularity": np.array([3.0, 2.0, 1.0], dtype=np.float32),
        "neighbors": np.array([[1, 2], [0, 2], [0, 1]], dtype=np.int32),
        "neighbor_scores": np.array([[0.9, 0.2], [0.9, 0.4], [0.2, 0.4]], dtype=np.float32),
        "user_ids": np.array(["u0", "u1"]),
        "history_indptr": np.array([0, 1, 3], dtype=np.int64),
        "history_indices": np.array([0, 1, 2], dtype=np.int32),
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


class Registry:
    """The stub's state: versions, runs, artifact files, the alias, the promotions received."""

    def __init__(self, artifact: bytes | None = None) -> None:
        self.lock = threading.Lock()
        self.version = "1"
        self.promoted: list[dict[str, Any]] = []  # the set-alias bodies
        self.runs: dict[str, dict[str, str]] = {"r1": self._run_info("r1")}
        self.files: dict[str, bytes] = {
            f"1/r1/artifacts/model/{ARTIFACT_FILE}": artifact or small_artifact()
        }
        self.versions: dict[str, dict[str, Any]] = {
            "1": {
                "version": "1",
                "source": "mlflow-artifacts:/1/r1/artifacts/model",
                "run_id": "r1",
            }
        }

    @staticmethod
    def _run_info(run_id: str, experiment: str = "1") -> dict[str, str]:
        artifacts = f"mlflow-artifacts:/{experiment}/{run_id}/artifacts"
        return {"run_id": run_id, "experiment_id": experiment, "artifact_uri": artifacts}

    def current(self) -> str:
        with self.lock:
            return self.version

    def digest(self, version: str) -> str:
        """The short sha256 of `version`'s artifact (`?` when it has none)."""
        with self.lock:
            source = self.versions.get(version, {}).get("source", "")
            data = self.files.get(f"{urlsplit(source).path.strip('/')}/{ARTIFACT_FILE}")
        return hashlib.sha256(data).hexdigest()[:12] if data is not None else "?"

    def answer(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> Any:
        """The JSON answer of one REST call (None: 404)."""
        with self.lock:
            if path == "/registered-models/alias":
                if method == "GET":
                    return {"model_version": self.versions[self.version]}
                self.promoted.append(body)
                self.version = str(body.get("version", self.version))
                return {}
            if path == "/runs/get":
                info = self.runs.get(query.get("run_id", ""))
                return {"run": {"info": info}} if info else None
            if path == "/runs/create":
                run_id = f"r{len(self.runs) + 1}"
                self.runs[run_id] = self._run_info(run_id, str(body.get("experiment_id", "0")))
                return {"run": {"info": self.runs[run_id]}}
            if path == "/runs/update":
                return {"run_info": self.runs.get(str(body.get("run_id")), {})}
            if path == "/model-versions/create":
                new = str(max(int(v) for v in self.versions) + 1)
                self.versions[new] = {
                    "version": new,
                    "source": body["source"],
                    "run_id": body.get("run_id", ""),
                    "status": "READY",
                }
                return {"model_version": self.versions[new]}
        return None


class _Handler(BaseHTTPRequestHandler):
    registry: Registry  # set on the per-server subclass

    def _call(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        if parts.path.startswith(ARTIFACTS):
            self._artifact(method, unquote(parts.path[len(ARTIFACTS) :]), raw)
            return
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        body = json.loads(raw or b"{}")
        answer = self.registry.answer(method, parts.path.removeprefix(API), query, body)
        if answer is None:
            self.send_error(404)
        else:
            reply(self, json.dumps(answer).encode(), "application/json")

    def _artifact(self, method: str, path: str, raw: bytes) -> None:
        with self.registry.lock:
            if method == "PUT":
                self.registry.files[path] = raw
                data: bytes | None = b"{}"
            else:
                data = self.registry.files.get(path)
        if data is None:
            self.send_error(404)
        else:
            reply(self, data, "application/octet-stream")

    def do_GET(self) -> None:  # noqa: N802  http.server's spelling
        self._call("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._call("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._call("PUT")

    def log_message(self, *args: object) -> None:
        return


@contextmanager
def serve_registry(artifact: bytes | None = None) -> Iterator[tuple[Registry, str]]:
    """A fresh registry stub (version 1: `artifact`, default a small valid one); yields it and
    its base URL."""
    registry = Registry(artifact)
    handler = type("Handler", (_Handler,), {"registry": registry})
    server, url = serve(handler)
    try:
        yield registry, url
    finally:
        server.shutdown()
        server.server_close()
