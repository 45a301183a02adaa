"""The control API (HTTP/JSON on loopback) the chaos driver and the CLI talk to.

Routes only translate HTTP to calls on the running `Stack` and its errors to
`{"error": "..."}` with a 4xx status; the behaviour lives in daemon.py and supervisor.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field, ValidationError

from chaoshelius.stack.config import StackConfig
from chaoshelius.stack.errors import InvalidRequest, StackError
from chaoshelius.stack.faults import MAX_TTL_SECONDS

if TYPE_CHECKING:
    from chaoshelius.stack.daemon import Stack

Ttl = Annotated[float, Field(gt=0, le=MAX_TTL_SECONDS)]


class KillRequest(BaseModel):
    selector: str = ""
    count: int | None = Field(default=None, ge=1)


class ScaleRequest(BaseModel):
    replicas: int = Field(ge=0, le=9)
    ttl_seconds: Ttl


class DrainRequest(BaseModel):
    ttl_seconds: Ttl


class PathFaultRequest(BaseModel):
    mode: Literal["blackhole", "reset", "latency"]
    latency_ms: int = Field(default=0, ge=0, le=600_000)
    ttl_seconds: Ttl


class NotFound(StackError):
    """The named pod/zone/edge/app/fault does not exist (404)."""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(stack: Stack) -> FastAPI:
    app = FastAPI(title="Helius local stack control API", docs_url=None, redoc_url=None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        return _error(400, f"{where}: {first['msg']}")

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(InvalidRequest)
    async def _invalid_request(request: Request, exc: InvalidRequest) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(StackError)
    async def _refused(request: Request, exc: StackError) -> JSONResponse:
        return _error(409, str(exc))

    @app.get("/status")
    async def status() -> dict[str, Any]:
        return stack.status()

    @app.get("/pods")
    async def pods(selector: str = "") -> dict[str, Any]:
        return {"pods": stack.list_pods(selector)}

    @app.post("/pods/kill")
    async def kill(body: KillRequest) -> dict[str, Any]:
        return {"killed": stack.kill_pods(body.selector, body.count)}

    @app.post("/apps/{app_name}/scale")
    async def scale(app_name: str, body: ScaleRequest) -> dict[str, Any]:
        return {"fault": stack.scale(app_name, body.replicas, body.ttl_seconds)}

    @app.delete("/apps/{app_name}/scale")
    async def unscale(app_name: str) -> dict[str, Any]:
        return {"removed": stack.unscale(app_name)}

    @app.post("/zones/{zone}/drain")
    async def drain(zone: str, body: DrainRequest) -> dict[str, Any]:
        return {"fault": stack.drain(zone, body.ttl_seconds)}

    @app.post("/zones/{zone}/uncordon")
    async def uncordon(zone: str) -> dict[str, Any]:
        return {"removed": stack.uncordon(zone)}

    @app.post("/paths/{edge}/faults")
    async def cut(edge: str, body: PathFaultRequest) -> dict[str, Any]:
        return {"fault": stack.cut(edge, body.mode, body.latency_ms, body.ttl_seconds)}

    @app.delete("/paths/{edge}/faults")
    async def restore(edge: str) -> dict[str, Any]:
        return {"removed": stack.restore(edge)}

    @app.get("/faults")
    async def faults() -> dict[str, Any]:
        return {"faults": stack.list_faults()}

    @app.delete("/faults/{fault_id}")
    async def remove_fault(fault_id: str) -> dict[str, Any]:
        return {"removed": stack.remove_fault(fault_id)}

    @app.get("/events")
    async def events() -> dict[str, Any]:
        return {"events": stack.list_events()}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(stack.metrics(), media_type=CONTENT_TYPE_LATEST)

    @app.put("/profile", response_model=None)
    async def profile(body: dict[str, Any]) -> dict[str, Any] | JSONResponse:
        """Swap to another profile that differs only in the recommender (no full restart)."""
        try:
            config = StackConfig.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return _error(400, f"profile: {where}: {first['msg']}")
        await stack.reconfigure(config)
        return {"profile": config.model_dump(mode="json")}

    @app.post("/shutdown")
    async def shutdown() -> dict[str, Any]:
        stack.request_stop()
        return {"stopping": True}

    return app
