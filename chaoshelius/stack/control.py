"""The control API (HTTP/JSON on loopback) the chaos driver and the CLI talk to.

Only the stack's owner may use it. Before any route runs, `_Guard` (one ASGI middleware)
refuses, with the API's own `{"error": "..."}` body:

- a `Host` header that is not a loopback name (403): a web page reaching 127.0.0.1 through
  DNS rebinding sends its own host name;
- a request without `Authorization: Bearer <the stack's token>` (401): the token is in the
  state directory, 0600 (chaoshelius/stack/auth.py);
- a body over `MAX_BODY_BYTES` (413), read before any route parses it;
- a state-changing request (POST, PUT, PATCH, DELETE) whose body is not declared JSON (415):
  a cross-origin HTML form cannot send `application/json` without a CORS preflight, which
  this API never grants.

Routes only translate HTTP to calls on the running stack, through the `StackOperations`
protocol (chaoshelius/stack/operations.py; the daemon's `Stack` satisfies it); domain errors
(chaoshelius/stack/errors.py) become 4xx answers here, at this one boundary.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from chaoshelius.stack import api_models as api
from chaoshelius.stack import selectors
from chaoshelius.stack.config import shipped_profile
from chaoshelius.stack.errors import InvalidRequest, NotFound, StackError
from chaoshelius.stack.operations import StackOperations

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# loopback names only, with any port (an SSH tunnel may forward another local port)
_LOOPBACK_HOST = re.compile(r"^(127\.0\.0\.1|localhost|\[::1\])(:[0-9]{1,5})?$", re.IGNORECASE)
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _Guard:
    """Host allow-list, bearer token, body-size limit and JSON-only bodies (module docstring)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope["headers"]}
        refusal = self._refuse(scope["method"], headers)
        if refusal is None:
            body, refusal = await self._read_body(receive, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # http.disconnect, when the client goes away

        await self.app(scope, replay, send)

    def _refuse(self, method: str, headers: dict[str, bytes]) -> JSONResponse | None:
        host = headers.get("host", b"").decode("latin-1")
        if not _LOOPBACK_HOST.match(host):
            return _error(403, f"Host {host!r} is not allowed: use 127.0.0.1, localhost or [::1]")
        scheme, _, presented = headers.get("authorization", b"").partition(b" ")
        if scheme.lower() != b"bearer" or not secrets.compare_digest(presented, self._token):
            return _error(
                401,
                "missing or wrong control token: send `Authorization: Bearer <token>` with the "
                "token in <state dir>/control.token (or HELIUS_CONTROL_TOKEN)",
                {"WWW-Authenticate": "Bearer"},
            )
        length = headers.get("content-length", b"0")
        if not length.isdigit():
            return _error(400, "a body needs a Content-Length")
        if int(length) > api.MAX_BODY_BYTES:
            return _error(413, f"the body is over {api.MAX_BODY_BYTES} bytes")
        media_type = headers.get("content-type", b"").split(b";")[0].strip().lower()
        sends_body = int(length) > 0 or "transfer-encoding" in headers
        # POST/PUT/PATCH always carry a JSON body (`{}` when the route takes no parameter);
        # an undo (DELETE) may carry none
        needs_json = sends_body or (method in _STATE_CHANGING and method != "DELETE")
        if needs_json and media_type != b"application/json":
            return _error(415, "the body must be JSON (Content-Type: application/json)")
        return None

    async def _read_body(
        self, receive: Receive, headers: dict[str, bytes]
    ) -> tuple[bytes, JSONResponse | None]:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > api.MAX_BODY_BYTES:
                return b"", _error(413, f"the body is over {api.MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks), None


def create_app(stack: StackOperations, token: str) -> FastAPI:
    app = FastAPI(
        title="Helius local stack control API", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.add_middleware(_Guard, token=token)
    _add_error_handlers(app)
    for router in (_reading(stack), _pod_and_fault_routes(stack), _stack_routes(stack)):
        app.include_router(router)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every refusal is `{"error": "..."}`: validation 400, domain errors 404/400/409."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        if first.get("type") == "json_invalid":
            return _error(400, f"the body is not valid JSON: {first['msg']}")
        return _error(400, f"{where}: {first['msg']}" if where else str(first["msg"]))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return _error(exc.status_code, f"{request.method} {request.url.path}: {detail}")

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(InvalidRequest)
    async def _invalid_request(request: Request, exc: InvalidRequest) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(StackError)
    async def _refused(request: Request, exc: StackError) -> JSONResponse:
        return _error(409, str(exc))


def _reading(stack: StackOperations) -> APIRouter:
    """GET routes: status, pods, faults, events, metrics."""
    router = APIRouter()

    @router.get("/status")
    async def status() -> api.Status:
        return stack.status()

    @router.get("/pods")
    async def pods(selector: str = "") -> api.PodList:
        return api.PodList(pods=stack.list_pods(selectors.parse(selector)))

    @router.get("/faults")
    async def faults() -> api.FaultList:
        return api.FaultList(faults=stack.list_faults())

    @router.get("/events")
    async def events() -> api.EventList:
        return api.EventList(events=stack.list_events())

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(stack.metrics(), media_type=CONTENT_TYPE_LATEST)

    return router


def _pod_and_fault_routes(stack: StackOperations) -> APIRouter:
    """Pod kills, and the TTL-bound faults with their undo."""
    router = APIRouter()

    @router.post("/pods/kill")
    async def kill(body: api.KillRequest) -> api.Killed:
        return api.Killed(killed=stack.kill_pods(selectors.parse(body.selector), body.count))

    @router.post("/apps/{app_name}/scale")
    async def scale(app_name: str, body: api.ScaleRequest) -> api.Injected:
        return api.Injected(fault=stack.scale(app_name, body.replicas, body.ttl_seconds))

    @router.delete("/apps/{app_name}/scale")
    async def restore_scale(app_name: str) -> api.Removed:
        return api.Removed(removed=stack.restore_scale(app_name))

    @router.post("/zones/{zone}/drain")
    async def drain_zone(zone: str, body: api.DrainRequest) -> api.Injected:
        return api.Injected(fault=stack.drain_zone(zone, body.ttl_seconds))

    @router.post("/zones/{zone}/uncordon")
    async def uncordon_zone(zone: str, body: api.EmptyRequest) -> api.Removed:
        return api.Removed(removed=stack.uncordon_zone(zone))

    @router.post("/paths/{edge}/faults")
    async def cut_path(edge: str, body: api.PathFaultRequest) -> api.Injected:
        fault = stack.cut_path(edge, body.mode, body.latency_ms, body.ttl_seconds)
        return api.Injected(fault=fault)

    @router.delete("/paths/{edge}/faults")
    async def restore_path(edge: str) -> api.Removed:
        return api.Removed(removed=stack.restore_path(edge))

    @router.delete("/faults/{fault_id}")
    async def remove_fault(fault_id: str) -> api.Removed:
        return api.Removed(removed=stack.remove_fault(fault_id))

    return router


def _stack_routes(stack: StackOperations) -> APIRouter:
    """The stack itself: its profile, its shutdown."""
    router = APIRouter()

    @router.put("/profile")
    async def profile(body: api.ProfileRequest) -> api.ProfileApplied:
        """Swap to a shipped profile a running stack can take in place (no full restart): new
        recommender pods, MLflow's probes or the alert rules applied live.

        The body names the profile; its content (the app factory, the environment) comes from
        the shipped file, never from the request.
        """
        config = shipped_profile(body.name)
        await stack.reconfigure(config)
        return api.ProfileApplied(name=body.name, profile=config.model_dump(mode="json"))

    @router.post("/shutdown")
    async def shutdown(body: api.EmptyRequest) -> api.Stopping:
        stack.request_stop()
        return api.Stopping(stopping=True)

    return router
