"""`GET /metrics`: the Prometheus exposition of this app's registry."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from helius_reco.api.deps import ComponentsDep

router = APIRouter(tags=["observability"])


@router.get("/metrics", response_class=Response)
def metrics(components: ComponentsDep) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(components.metrics.registry), media_type=CONTENT_TYPE_LATEST)
