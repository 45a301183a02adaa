"""`POST /predict`: ranked items from the model in memory; never calls MLflow.

This is the request hot path and is kept lean on purpose: FastAPI's generic body handling
(content negotiation, `json.loads`, then validation) and response validation cost more than
the recommendation itself (benchmarks/bench_predict.py). So the route validates the body with
pydantic straight from the bytes and serialises the answer in one call. Nothing is lost on the
outside: the OpenAPI schema still shows `PredictRequest` and `PredictResponse`, and a malformed
body still gets FastAPI's 422 `{"detail": [...]}` with the field named.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from pydantic_core import to_json

from helius_reco.api.deps import components_of
from helius_reco.api.schemas import PredictRequest, PredictResponse, ValidationErrorResponse

router = APIRouter(tags=["recommendations"])

_REQUEST_BODY_DOC = {
    "required": True,
    "content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
}


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses={
        status.HTTP_422_UNPROCESSABLE_CONTENT: {
            "model": ValidationErrorResponse,
            "description": "The body is not a valid PredictRequest.",
        },
        status.HTTP_503_SERVICE_UNAVAILABLE: {"description": "No model loaded yet."},
    },
    openapi_extra={"requestBody": _REQUEST_BODY_DOC},
)
async def predict(request: Request) -> Response:
    """Top-N items for a user, with the model version and where the model came from."""
    body = _parse(request.headers.get("content-type"), await request.body())
    # one read of the store: a concurrent swap cannot mix two models in one answer
    served = components_of(request).store.current
    if served is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no model loaded yet")
    reco = served.model.recommend(body.user_id, body.k, body.exclude)
    answer = {  # the fields of PredictResponse
        "user_id": body.user_id,
        "items": [{"item_id": item, "score": score} for item, score in reco.items],
        "known_user": reco.known_user,
        "model_version": served.version,
        "model_source": served.source.value,
    }
    return Response(to_json(answer), media_type="application/json")


def _parse(content_type: str | None, raw: bytes) -> PredictRequest:
    """The body as a PredictRequest, or the RequestValidationError FastAPI would raise."""
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        raise RequestValidationError([_body_error("content_type", "expected application/json")])
    try:
        return PredictRequest.model_validate_json(raw)
    except ValidationError as exc:
        try:
            raw.decode()
        except UnicodeDecodeError as decode_error:
            message = f"request body could not be read as UTF-8 JSON ({decode_error})"
            raise RequestValidationError([_body_error("body_not_decodable", message)]) from exc
        errors = exc.errors(include_url=False)
        for error in errors:
            error["loc"] = ("body", *error["loc"])
        raise RequestValidationError(errors) from exc


def _body_error(kind: str, message: str) -> dict[str, Any]:
    return {"type": kind, "loc": ("body",), "msg": message}
