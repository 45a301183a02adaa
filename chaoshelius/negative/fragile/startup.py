"""Start-up and liveness: a liveness or a start that needs the registry, a replacement slow to
serve, cold or not warm when it is Ready."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from helius_reco.main import create_app

from chaoshelius.negative.fragile._base import (
    _components,
    _mark_serving,
    _Next,
    _peers_dir,
    _serving_peers,
    _wrap_lifespan,
)

SLOW_START_SECONDS = 60.0  # past the await (30 s) + settle (10 s) + the after-checks


def health_needs_mlflow_app() -> FastAPI:
    """`/health` (the liveness endpoint) answers 503 while the registry cannot be reached, so
    the kubelet (the local stack's supervisor) restarts every pod once an MLflow outage
    outlasts the liveness budget (3 x 10 s). Caught by `pods_survived` in mlflow-outage."""
    app = create_app()
    refresher = _components(app).refresher

    @app.middleware("http")
    async def health_checks_registry(request: Request, call_next: _Next) -> Response:
        if request.url.path == "/health" and not refresher.mlflow_connected:
            return JSONResponse({"status": "registry unreachable"}, 503)
        return await call_next(request)

    return app


def startup_needs_mlflow_app() -> FastAPI:
    """Refuses to start unless the registry confirms the model ("never start on a stale
    model"): a pod replaced during an MLflow outage crash-loops instead of serving its cache.
    Caught by `replicas_recovered_within` in reco-cold-start-during-outage."""
    app = create_app()

    async def require_registry(app_: FastAPI) -> None:
        outcome = await asyncio.to_thread(_components(app_).refresher.refresh_once)
        if not outcome.ok:
            raise RuntimeError(f"registry unreachable at start-up ({outcome.detail})")

    _wrap_lifespan(app, require_registry)
    return app


def slow_start_app() -> FastAPI:
    """A replica that joins running peers first syncs their precomputed top-k, for 60 s, before
    serving: a killed pod's replacement is not ready for a long time. Caught by
    `replicas_recovered_within`, `pods_replaced` and the after-method `pods_ready` in
    reco-pod-kill. The replicas of a fresh deploy have no peer serving yet (none has served
    for `PEER_SERVING_SECONDS`) and start at once, so switching the stack to this profile does
    not cost the suite a minute. Peers are the pods of the stack's cache directory that wrote
    their pid on serving and are still alive."""
    app = create_app()

    async def sync_from_peers(app_: FastAPI) -> None:
        peers = _peers_dir()
        if _serving_peers(peers):
            await asyncio.sleep(SLOW_START_SECONDS)
        _mark_serving(peers)

    _wrap_lifespan(app, sync_from_peers)
    return app


def cold_first_requests_app() -> FastAPI:
    """A replica that builds its scoring index lazily, on the request path: a pod that joins
    serving peers (a replacement) answers its first `COLD_REQUESTS` predictions 400 ms late
    each. A fresh deploy's pods are warmed before the load starts, so only a replacement
    under load shows it: the tail of reco-pod-kill goes past the service's SLO (p99 <= 300 ms)
    and its relative allowance (3x + 150 ms where a process restarts). Caught by
    `latency_p99_ratio` with the restart setting."""
    return _replacement_first_predictions(_slow_prediction)


def ready_before_warm_app() -> FastAPI:
    """`/ready` says yes before the model is warmed: a replacement answers its first
    `COLD_REQUESTS` predictions 503 ("model warming up"). About 3 % of the predictions over a
    pod kill and its recovery, and ~25 % of a 5 s window: past the 98 % / 80 % floors that
    allow for the killed pod's lost in-flight requests. Caught by `client_success_ratio` with
    the lost-in-flight setting."""
    return _replacement_first_predictions(_warming_up)


COLD_REQUESTS = 300  # ~3.6 s of a replacement's share (1/3) of 250 requests/s
COLD_REQUEST_SECONDS = 0.4


async def _slow_prediction(request: Request, call_next: _Next) -> Response:
    await asyncio.sleep(COLD_REQUEST_SECONDS)
    return await call_next(request)


async def _warming_up(request: Request, call_next: _Next) -> Response:
    return JSONResponse({"detail": "model warming up"}, 503)


def _replacement_first_predictions(
    cold: Callable[[Request, _Next], Awaitable[Response]],
) -> FastAPI:
    """The real app, where a replica that joined serving peers handles its first
    `COLD_REQUESTS` predictions with `cold` instead."""
    app = create_app()
    left = 0

    async def join(app_: FastAPI) -> None:
        nonlocal left
        peers = _peers_dir()
        left = COLD_REQUESTS if _serving_peers(peers) else 0
        _mark_serving(peers)

    @app.middleware("http")
    async def first_predictions(request: Request, call_next: _Next) -> Response:
        nonlocal left
        if request.url.path != "/predict" or left <= 0:
            return await call_next(request)
        left -= 1
        return await cold(request, call_next)

    _wrap_lifespan(app, join)
    return app
