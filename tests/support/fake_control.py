"""A fake of the local stack's control API (docs/stack.md), served on port 0.

Real sockets, real JSON: the local driver and the activities are tested over HTTP against the
documented contract, with the server's own models (`chaoshelius.stack.api_models`): request
bodies are validated as the server would, answers are built from the response models. Like
the server it refuses a request without the stack's bearer token (401). It records every
request so tests can assert what was sent, and keeps just enough state (pods, faults with TTL)
to make the answers consistent.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import BaseModel, ValidationError

from chaoshelius.stack import api_models as api
from support.http import serve as serve_handler

_REQUESTS: dict[tuple[str, str], type[BaseModel]] = {
    ("POST", "/pods/kill"): api.KillRequest,
    ("POST", "scale"): api.ScaleRequest,
    ("POST", "drain"): api.DrainRequest,
    ("POST", "uncordon"): api.EmptyRequest,
    ("POST", "faults"): api.PathFaultRequest,
}


@dataclass
class FakeStack:
    pods: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    lock: threading.Lock = field(default_factory=threading.Lock)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    def add_pod(self, app: str, zone: str, ready: bool = True) -> str:
        name = f"{app}-{next(self._names):05x}"
        port = 27100 + next(self._names)
        row = api.Pod(
            name=name,
            app=app,
            zone=zone,
            namespace="helius",
            labels={"app": app, "pod": name, "zone": zone, "namespace": "helius"},
            state="ready" if ready else "not-ready",
            ready=ready,
            restarts=0,
            slot=0,
            port=port,
            url=f"http://127.0.0.1:{port}",
            pid=None,
            started_at=time.time(),
            log=f"/dev/null/{name}.log",
        )
        self.pods.append(row.model_dump(mode="json"))
        return name

    def _expire(self) -> None:
        now = time.time()
        self.faults = [f for f in self.faults if f["expires_at"] > now]

    def _match(self, selector: str) -> list[dict[str, Any]]:
        wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
        return [p for p in self.pods if all(str(p.get(k)) == v for k, v in wanted.items())]

    def _add_fault(self, kind: str, target: str, params: dict[str, Any], ttl: float) -> Any:
        self.faults = [f for f in self.faults if (f["kind"], f["target"]) != (kind, target)]
        now = time.time()
        fault = {
            "id": f"{kind}-{next(self._ids)}",
            "kind": kind,
            "target": target,
            "params": params,
            "started_at": now,
            "expires_at": now + ttl,
        }
        self.faults.append(fault)
        return fault

    def _remove(self, kind: str, target: str) -> list[dict[str, Any]]:
        removed = [f for f in self.faults if (f["kind"], f["target"]) == (kind, target)]
        self.faults = [f for f in self.faults if f not in removed]
        return removed

    def handle(
        self, method: str, path: str, query: str, body: Any, authorization: str = ""
    ) -> tuple[int, Any]:
        with self.lock:
            if authorization != f"Bearer {self.token}":
                return 401, {"error": "missing or wrong control token"}
            self.requests.append((method, path + (f"?{query}" if query else ""), body))
            model = _REQUESTS.get((method, path)) or _REQUESTS.get((method, path.split("/")[-1]))
            if model is not None:
                try:
                    model.model_validate(body)
                except ValidationError as exc:
                    return 400, {"error": str(exc.errors()[0]["msg"])}
            self._expire()
            if method == "GET" and path == "/pods":
                selector = dict(
                    part.split("=", 1) for part in query.split("&") if part.startswith("selector=")
                ).get("selector", "")
                from urllib.parse import unquote

                return 200, {"pods": self._match(unquote(selector))}
            if method == "POST" and path == "/pods/kill":
                pods = self._match(body["selector"])
                if not pods:
                    return 404, {"error": f"no running pod matches selector {body['selector']!r}"}
                pods = pods[: body.get("count") or len(pods)]
                for pod in pods:
                    self.pods.remove(pod)
                    self.add_pod(pod["app"], pod["zone"])
                return 200, {"killed": [p["name"] for p in pods]}
            if m := re.fullmatch(r"/apps/([^/]+)/scale", path):
                if method == "POST":
                    fault = self._add_fault(
                        "scale", m[1], {"replicas": body["replicas"]}, body["ttl_seconds"]
                    )
                    return 200, {"fault": fault}
                return 200, {"removed": self._remove("scale", m[1])}
            if m := re.fullmatch(r"/zones/([^/]+)/(drain|uncordon)", path):
                if m[1] not in ("zone-a", "zone-b", "zone-c"):
                    return 404, {"error": f"unknown zone {m[1]}"}
                if m[2] == "drain":
                    return 200, {"fault": self._add_fault("drain", m[1], {}, body["ttl_seconds"])}
                return 200, {"removed": self._remove("drain", m[1])}
            if m := re.fullmatch(r"/paths/([^/]+)/faults", path):
                if method == "POST":
                    params = {k: v for k, v in body.items() if k != "ttl_seconds"}
                    return 200, {
                        "fault": self._add_fault("path", m[1], params, body["ttl_seconds"])
                    }
                return 200, {"removed": self._remove("path", m[1])}
            if method == "GET" and path == "/faults":
                return 200, {"faults": list(self.faults)}
            if m := re.fullmatch(r"/faults/([^/]+)", path):
                removed = [f for f in self.faults if f["id"] == m[1]]
                self.faults = [f for f in self.faults if f not in removed]
                return 200, {"removed": removed}
            return 404, {"error": f"no route {method} {path}"}


class _Handler(BaseHTTPRequestHandler):
    stack: FakeStack

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        path, _, query = self.path.partition("?")
        authorization = self.headers.get("Authorization") or ""
        status, payload = self.stack.handle(self.command, path, query, body, authorization)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


def serve(stack: FakeStack) -> tuple[ThreadingHTTPServer, str]:
    """Serve `stack` on 127.0.0.1, a free port; return the server and its base URL."""
    return serve_handler(type("Handler", (_Handler,), {"stack": stack}))
