"""Slower predictions whatever the fault: an extra call on the hot path, a lock shared with the
refresh."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request, Response
from helius_reco.main import create_app

from chaoshelius.negative.fragile._base import _components, _Next

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
