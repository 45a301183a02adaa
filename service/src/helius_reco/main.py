"""The app factory: `uvicorn helius_reco.main:create_app --factory`.

Every component can be injected (tests, and the negative-control variants in
`chaoshelius/negative/`, which wrap these pieces instead of forking them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

from helius_reco import SERVICE_NAME, __version__
from helius_reco.api import errors
from helius_reco.api.deps import Components
from helius_reco.api.middleware import RequestMetricsMiddleware
from helius_reco.api.routes import health, metrics, predict
from helius_reco.core.config import Settings, get_settings
from helius_reco.lifecycle.cache import ModelCache
from helius_reco.lifecycle.refresher import Refresher
from helius_reco.lifecycle.registry import MlflowRegistry, ModelRegistry
from helius_reco.lifecycle.store import ModelStore
from helius_reco.metrics import Metrics

log = logging.getLogger("helius_reco")


def build_refresher(
    settings: Settings,
    metrics: Metrics,
    *,
    model_store: ModelStore | None = None,
    model_registry: ModelRegistry | None = None,
) -> Refresher:
    """The default refresher for `settings` (MLflow registry if a tracking URI is set)."""
    if model_registry is None and settings.mlflow_tracking_uri:
        model_registry = MlflowRegistry(
            settings.mlflow_tracking_uri,
            settings.model_name,
            settings.model_alias,
            client_env=settings.mlflow_client_env(),
            max_bytes=settings.max_artifact_bytes,
            # the download ends with the attempt: an abandoned one frees its slot at once
            download_deadline_seconds=settings.refresh_deadline_seconds,
            read_timeout_seconds=settings.mlflow_http_timeout_seconds,
        )
    return Refresher(
        model_store or ModelStore(),
        model_registry,
        ModelCache(
            settings.cache_dir,
            max_bytes=settings.max_artifact_bytes,
            max_decompressed_bytes=settings.max_artifact_decompressed_bytes,
            max_history_neighbors=settings.max_history_neighbors,
        ),
        metrics,
        interval_seconds=settings.refresh_interval_seconds,
        deadline_seconds=settings.refresh_deadline_seconds,
        max_hung=settings.max_hung_refreshes,
        max_bytes=settings.max_artifact_bytes,
        max_decompressed_bytes=settings.max_artifact_decompressed_bytes,
        max_history_neighbors=settings.max_history_neighbors,
    )


def create_app(
    settings: Settings | None = None,
    model_store: ModelStore | None = None,
    refresher: Refresher | None = None,
    registry: CollectorRegistry | None = None,
    model_registry: ModelRegistry | None = None,
) -> FastAPI:
    """Assemble the service.

    `registry` is the Prometheus registry (a fresh one by default, never the global one).
    An injected `refresher` brings its own store and metrics; `model_store`/`registry`
    must then be omitted or be the refresher's own.
    """
    settings = settings or get_settings()
    _configure_logging(settings.log_level)
    if refresher is not None:
        if model_store is not None and model_store is not refresher.store:
            raise ValueError("model_store differs from the injected refresher's store")
        if registry is not None and registry is not refresher.metrics.registry:
            raise ValueError("registry differs from the injected refresher's metrics registry")
        metrics_ = refresher.metrics
    else:
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
        metrics_ = Metrics(registry)
        refresher = build_refresher(
            settings, metrics_, model_store=model_store, model_registry=model_registry
        )
    components = Components(settings, refresher.store, refresher, metrics_)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        components.refresher.load_local()
        # One refresh attempt (bounded by its deadline) before the first answer: the fallback
        # gauge is never scraped before the pod has asked the registry, so a fresh pod with
        # MLflow up never reads "in fallback", and with MLflow down it starts within the
        # deadline anyway, serving its cache or the baseline.
        await asyncio.to_thread(components.refresher.refresh_once)
        components.refresher.start()
        try:
            yield
        finally:
            components.refresher.stop()

    app = FastAPI(
        title=SERVICE_NAME,
        version=__version__,
        description="Recommendations that keep flowing when the model registry does not.",
        lifespan=lifespan,
    )
    app.state.components = components
    errors.install(app)
    app.include_router(predict.router)  # first: the hot path is matched before the others
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics_)
    return app


def _configure_logging(level: str) -> None:
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(level.upper())
