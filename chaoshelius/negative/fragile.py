"""Known-fragile recommender variants (uvicorn app factories) for negative controls only.

Each wraps the real app (`helius_reco.main.create_app`) and adds one classic mistake:

- `hot_path_mlflow_app`: asks the registry which model is current on every `/predict`, with a
  generous 30 s client timeout and no fallback (the "just call MLflow" design).
- `no_fallback_app`: refuses to predict (503) whenever the last refresh failed, instead of
  serving the last known good model (the "never serve a possibly stale model" design).

Run with `uvicorn chaoshelius.negative.fragile:hot_path_mlflow_app --factory`; the stack
profiles in `profiles/` do this through `reco_app`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from helius_reco.api.deps import Components
from helius_reco.main import create_app

__all__ = ["hot_path_mlflow_app", "no_fallback_app"]

_Next = Callable[[Request], Awaitable[Response]]
HOT_PATH_TIMEOUT_SECONDS = 30.0


def _components(app: FastAPI) -> Components:
    components: Components = app.state.components
    return components


def hot_path_mlflow_app() -> FastAPI:
    """The real service, plus a registry lookup on the request path (fragile)."""
    app = create_app()
    settings = _components(app).settings
    alias_url = f"{settings.mlflow_tracking_uri}/api/2.0/mlflow/registered-models/alias"
    params = {"name": settings.model_name, "alias": settings.model_alias}
    client = httpx.AsyncClient(timeout=HOT_PATH_TIMEOUT_SECONDS)

    @app.middleware("http")
    async def ask_registry_first(request: Request, call_next: _Next) -> Response:
        if request.url.path != "/predict":
            return await call_next(request)
        try:
            answer = await client.get(alias_url, params=params)
        except httpx.HTTPError as exc:
            return JSONResponse({"detail": f"model registry unreachable: {exc!r}"}, 502)
        if answer.status_code != 200:
            return JSONResponse({"detail": f"model registry answered {answer.status_code}"}, 502)
        return await call_next(request)

    return app


def no_fallback_app() -> FastAPI:
    """The real service, minus the fallback: 503 while the registry cannot confirm the model."""
    app = create_app()
    refresher = _components(app).refresher

    @app.middleware("http")
    async def refuse_when_unconfirmed(request: Request, call_next: _Next) -> Response:
        if request.url.path == "/predict" and refresher.in_fallback:
            return JSONResponse({"detail": "model not confirmed by the registry"}, 503)
        return await call_next(request)

    return app
