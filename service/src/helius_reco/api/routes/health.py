"""Liveness (`/health`, 200 while the process runs) and readiness (`/ready`, 200/503)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from helius_reco import SERVICE_NAME, __version__
from helius_reco.api.deps import ComponentsDep
from helius_reco.api.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["probes"])


@router.get("/health")
async def health(components: ComponentsDep) -> HealthResponse:
    """Liveness: always 200 while the process runs, whatever the state of MLflow."""
    served = components.store.current
    return HealthResponse(
        status="ok",
        service=SERVICE_NAME,
        version=__version__,
        mlflow_connected=components.refresher.mlflow_connected,
        model_version=served.version if served else None,
        model_source=served.source.value if served else None,
        fallback_mode=components.refresher.in_fallback,
        pod=components.settings.pod_name,
        zone=components.settings.zone,
    )


@router.get(
    "/ready",
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": ReadyResponse}},
)
async def ready(components: ComponentsDep, response: Response) -> ReadyResponse:
    """Readiness: 200 once a model is servable and the first registry attempt has concluded."""
    served = components.store.current
    is_ready = components.refresher.ready
    if not is_ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return ReadyResponse(
        ready=is_ready,
        model_version=served.version if served else None,
        model_source=served.source.value if served else None,
        initial_refresh_done=components.refresher.initial_attempt_done.is_set(),
    )
