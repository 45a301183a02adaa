"""Total failures (the original controls): the registry on the hot path, no fallback at all."""

from __future__ import annotations

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from helius_reco.main import create_app

from chaoshelius import registry
from chaoshelius.negative.fragile._base import _components, _Next

HOT_PATH_TIMEOUT_SECONDS = 30.0


def hot_path_mlflow_app() -> FastAPI:
    """A registry lookup on every `/predict`, with a generous 30 s client timeout and no
    fallback (the "just call MLflow" design)."""
    app = create_app()
    settings = _components(app).settings
    client = httpx.AsyncClient(timeout=HOT_PATH_TIMEOUT_SECONDS)

    @app.middleware("http")
    async def ask_registry_first(request: Request, call_next: _Next) -> Response:
        if request.url.path != "/predict":
            return await call_next(request)
        try:
            answer = await registry.ask_alias(
                client, str(settings.mlflow_tracking_uri), settings.model_name, settings.model_alias
            )
        except httpx.HTTPError as exc:
            return JSONResponse({"detail": f"model registry unreachable: {exc!r}"}, 502)
        if answer.status_code != 200:
            return JSONResponse({"detail": f"model registry answered {answer.status_code}"}, 502)
        return await call_next(request)

    return app


def no_fallback_app() -> FastAPI:
    """503 while the registry cannot confirm the model ("never serve a possibly stale one")."""
    app = create_app()
    refresher = _components(app).refresher

    @app.middleware("http")
    async def refuse_when_unconfirmed(request: Request, call_next: _Next) -> Response:
        if request.url.path == "/predict" and refresher.in_fallback:
            return JSONResponse({"detail": "model not confirmed by the registry"}, 503)
        return await call_next(request)

    return app
