"""Target (a) of bench_predict.py: the framework's ceiling.

A bare FastAPI app whose `POST /predict` returns a constant JSON list (ten items shaped like
the service's) without reading the body, run under the same uvicorn settings as the service:

    python -m uvicorn bare_app:create_app --factory --app-dir benchmarks --port PORT
"""

from __future__ import annotations

from fastapi import FastAPI

ITEMS = [{"item_id": f"i{i:04d}", "score": 1.0 - i / 10} for i in range(10)]


def create_app() -> FastAPI:
    app = FastAPI()

    @app.post("/predict")
    async def predict() -> list[dict[str, object]]:
        return ITEMS

    return app
