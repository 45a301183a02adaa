"""Shared dependencies: the components assembled by `main.create_app`, typed for routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from helius_reco.core.config import Settings
from helius_reco.lifecycle.refresher import Refresher
from helius_reco.lifecycle.store import ModelStore
from helius_reco.metrics import Metrics


@dataclass(frozen=True)
class Components:
    settings: Settings
    store: ModelStore
    refresher: Refresher
    metrics: Metrics


def components_of(request: Request) -> Components:
    """The app's components; `/predict` calls this directly (no dependency solving)."""
    components: Components = request.app.state.components
    return components


async def get_components(request: Request) -> Components:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, and that
    # hop per request cost more than the whole recommendation (benchmarks/bench_predict.py)
    return components_of(request)


ComponentsDep = Annotated[Components, Depends(get_components)]
