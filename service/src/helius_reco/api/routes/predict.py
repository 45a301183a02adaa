"""`POST /predict`: ranked items from the model in memory; never calls MLflow."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from helius_reco.api.deps import ComponentsDep
from helius_reco.api.schemas import PredictRequest, PredictResponse, ScoredItem

router = APIRouter(tags=["recommendations"])


@router.post(
    "/predict",
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"description": "No model loaded yet."}},
)
async def predict(body: PredictRequest, components: ComponentsDep) -> PredictResponse:
    """Top-N items for a user, with the model version and where the model came from."""
    served = components.store.current  # one read: a concurrent swap cannot mix two models
    if served is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no model loaded yet")
    reco = served.model.recommend(body.user_id, body.k, body.exclude)
    return PredictResponse(
        user_id=body.user_id,
        items=[ScoredItem(item_id=item, score=score) for item, score in reco.items],
        known_user=reco.known_user,
        model_version=served.version,
        model_source=served.source.value,
    )
