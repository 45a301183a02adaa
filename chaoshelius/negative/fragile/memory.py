"""Memory that grows with the load and is never freed."""

from __future__ import annotations

import json
import uuid

from fastapi import FastAPI, Request, Response
from helius_reco.main import create_app

from chaoshelius.negative.fragile._base import _components, _Next

PAGE_SIZE = 100  # items ranked and kept per answer for its next pages


def page_tokens_app() -> FastAPI:
    """Pagination "for free": every answer ranks the user's top 100 once and keeps them under
    a page token (`X-Helius-Page-Token`) for the next pages; the tokens never expire, so every
    prediction adds ~15 KiB that is never freed (tens of MiB per pod over a run). Caught by
    `memory_growth_within`."""
    app = create_app()
    store = _components(app).store
    pages: dict[str, list[tuple[str, float]]] = {}

    @app.middleware("http")
    async def keep_next_pages(request: Request, call_next: _Next) -> Response:
        if request.url.path != "/predict":
            return await call_next(request)
        raw = await request.body()
        response = await call_next(request)
        served = store.current
        if response.status_code != 200 or served is None:
            return response
        try:
            body = json.loads(raw)
            user, exclude = str(body["user_id"]), list(body.get("exclude", []))
        except (ValueError, KeyError, TypeError, AttributeError):
            return response
        token = uuid.uuid4().hex
        pages[token] = list(served.model.recommend(user, PAGE_SIZE, exclude).items)
        response.headers["X-Helius-Page-Token"] = token
        return response

    return app
