"""Slower predictions: an extra call on the hot path, a lock shared with the refresh, a model
swapped in cold."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request, Response
from helius_reco.lifecycle.registry import ModelRef
from helius_reco.main import create_app
from helius_reco.model.recommender import RecoModel
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from chaoshelius.negative.fragile._base import _components, _Next, _wrap_lifespan

SLOW_EVERYWHERE_SECONDS = 0.03  # +30 ms on every prediction, before the fault as during it


def slow_everywhere_app() -> FastAPI:
    """Every prediction is 30 ms slower, from the start: an awaited per-request call (the
    user's recent history from a remote store) added to the hot path. Before the fault as
    during it, so the relative allowance (p50 x2 + 5 ms of the p50 *before*) passes it; the
    service's absolute SLO (`latency_p99_ratio`'s `slo_p50_ms`) does not."""
    app = create_app()

    @app.middleware("http")
    async def slow_down(request: Request, call_next: _Next) -> Response:
        if request.url.path == "/predict":
            await asyncio.sleep(SLOW_EVERYWHERE_SECONDS)
        return await call_next(request)

    return app


def refresh_blocks_requests_app() -> FastAPI:
    """Predictions take the refresh lock (a blocking `threading.Lock` on the event loop), so
    every request waits while a refresh is in flight: harmless while MLflow answers in ms,
    stalls clients when it is slow. Caught by `latency_p99_ratio` in mlflow-latency."""
    app = create_app()
    refresher = _components(app).refresher

    @app.middleware("http")
    async def wait_for_refresh(request: Request, call_next: _Next) -> Response:
        if request.url.path == "/predict":
            with refresher._refresh_lock:  # blocks the whole event loop: the mistake
                pass
        return await call_next(request)

    return app


# a pod's first predictions after a hot swap, each +300 ms: ~1.6 % of a pod's ~2450 answers
# over model-promoted-during-partition's fault and recovery (31 s at 250 req/s over 3 pods).
# Over 1 %, so the p99 is one of them: the clients' in their (0.3, 0.5] s bucket, past the SLO's
# 300 ms that caps 3x + 150 ms (a p99 before of 44 ms allows 282 ms: +200 ms passed it at
# 260 ms), the pod's own in its (0.25, 0.5] s bucket, past 3x ~5-10 ms + 150 ms
SWAP_COLD_PREDICTIONS = 40
SWAP_COLD_SECONDS = 0.3


def slow_after_swap_app() -> FastAPI:
    """The new model's scoring index (the item neighbour lists) is built lazily, on the request
    path, and the warm-up that fills it runs at start-up only: a hot swap to a new version (a
    promotion) serves a cold model, so a pod's first `SWAP_COLD_PREDICTIONS` predictions after
    it switches version take `SWAP_COLD_SECONDS` longer each. A fresh pod's first model, loaded
    before it serves, is warm. Every pod swaps once after a promotion, together: the clients'
    tail and each pod's own (its request metrics count the wait) pass 3x + 150 ms. Caught by
    `latency_p99_ratio` and `pods_prediction_slo` in model-promoted-during-partition."""
    app = create_app()
    refresher = _components(app).refresher
    cold = _ColdPredictions()
    original = refresher._serve

    def serve(ref: ModelRef, data: bytes, model: RecoModel) -> None:
        original(ref, data, model)
        if cold.serving:  # a swap under load, not the model loaded before the first answer
            cold.left = SWAP_COLD_PREDICTIONS

    async def serving(app_: FastAPI) -> None:
        cold.serving = True

    refresher._serve = serve  # type: ignore[method-assign]
    _wrap_lifespan(app, serving)
    # innermost, inside the request-metrics middleware: the pod times the wait as its own
    app.user_middleware.append(Middleware(_SlowWhileCold, cold=cold))
    return app


class _ColdPredictions:
    """How many predictions the current model still answers cold (set by the refresher's
    thread on a swap, counted down on the event loop)."""

    def __init__(self) -> None:
        self.serving = False
        self.left = 0


class _SlowWhileCold:
    """Plain ASGI (a `BaseHTTPMiddleware` would slow every answer): a prediction answered while
    the model is cold waits `SWAP_COLD_SECONDS` first."""

    def __init__(self, app: ASGIApp, cold: _ColdPredictions) -> None:
        self.app = app
        self.cold = cold

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/predict" and self.cold.left > 0:
            self.cold.left -= 1
            await asyncio.sleep(SWAP_COLD_SECONDS)
        await self.app(scope, receive, send)
