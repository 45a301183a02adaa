"""`POST /predict`: ranked items from the model in memory; never calls MLflow.

This is the request hot path and is kept lean on purpose: FastAPI's generic body handling
(content negotiation, `json.loads`, then validation) and response validation cost more than
the recommendation itself (benchmarks/bench_predict.py). So the route validates the body with
pydantic straight from the bytes and serialises the answer in one call. Nothing is lost on the
outside: the OpenAPI schema still shows `PredictRequest` and `PredictResponse`, and a malformed
body still gets FastAPI's 422 `{"detail": [...]}` with the field named.

What a request may cost is bounded here too: the body is refused with a 413 as soon as it is
known to pass `HELIUS_MAX_REQUEST_BODY_BYTES` (from Content-Length before anything is read,
else by counting the chunks as they arrive), and a 422 names the fields without echoing the
input: no `input`, long field names cut, at most `_MAX_REPORTED_ERRORS` errors.

A ranking that has real work to do (a user not ranked yet, of a model with long histories
or a large catalogue: `RecoModel.ranking_work` above `INLINE_RANKING_WORK` elements) runs in
the thread pool, at most `MAX_CONCURRENT_RANKINGS` at once, so that the event loop, and with
it `/health` and `/ready`, keeps answering. Everything else (kept rankings, popularity, the
trained model's users) is answered inline, as before: a thread hop costs more than it does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool

from helius_reco.api.deps import components_of
from helius_reco.api.schemas import PredictRequest, PredictResponse, ValidationErrorResponse
from helius_reco.model.recommender import DIGEST_CHARS

router = APIRouter(tags=["recommendations"])
POD_HEADER = "X-Helius-Pod"  # the pod that answered (Settings.pod_name)
_MAX_REPORTED_ERRORS = 10
_MAX_LOC_CHARS = 64
# array elements a ranking may process inline, on the event loop (~0.5 ms); the trained
# model's rankings take under 2,000
INLINE_RANKING_WORK = 65_536
# rankings off the loop at once (their memory is bounded each); the others wait on the loop,
# holding no thread, so the thread pool stays free for the rest (`/metrics` runs there)
MAX_CONCURRENT_RANKINGS = 2

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
        status.HTTP_413_CONTENT_TOO_LARGE: {
            "description": "The body is larger than HELIUS_MAX_REQUEST_BODY_BYTES."
        },
        status.HTTP_200_OK: {
            "headers": {
                POD_HEADER: {
                    "description": "The pod that answered.",
                    "schema": {"type": "string"},
                }
            }
        },
        status.HTTP_503_SERVICE_UNAVAILABLE: {"description": "No model loaded yet."},
    },
    openapi_extra={"requestBody": _REQUEST_BODY_DOC},
)
async def predict(request: Request) -> Response:
    """Top-N items for a user, with the model version and where the model came from."""
    components = components_of(request)
    raw = await _read_body(request, components.settings.max_request_body_bytes)
    body = _parse(request.headers.get("content-type"), raw)
    # one read of the store: a concurrent swap cannot mix two models in one answer
    served = components.store.current
    if served is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no model loaded yet")
    model = served.model
    if model.ranking_work(body.user_id, body.k, len(body.exclude)) <= INLINE_RANKING_WORK:
        reco = model.recommend(body.user_id, body.k, body.exclude)
    else:
        async with _ranking_slots(request.app):
            reco = await run_in_threadpool(model.recommend, body.user_id, body.k, body.exclude)
    answer = {  # the fields of PredictResponse
        "user_id": body.user_id,
        "items": [{"item_id": item, "score": score} for item, score in reco.items],
        "known_user": reco.known_user,
        "model_version": served.version,
        "model_source": served.source.value,
        "model_digest": model.artifact_digest or served.fingerprint[:DIGEST_CHARS],
    }
    return Response(
        to_json(answer),
        media_type="application/json",
        headers={POD_HEADER: components.settings.pod_name},
    )


def _ranking_slots(app: FastAPI) -> asyncio.Semaphore:
    """The app's semaphore for rankings off the loop (made on first use, on its loop)."""
    slots: asyncio.Semaphore | None = getattr(app.state, "ranking_slots", None)
    if slots is None:
        slots = asyncio.Semaphore(MAX_CONCURRENT_RANKINGS)
        app.state.ranking_slots = slots
    return slots


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, or a 413 as soon as it is known to be longer than `limit` bytes."""
    declared = request.headers.get("content-length")
    # more than 18 digits is past any limit (and int() refuses over 4300 digits)
    if declared is not None and (
        len(declared) > 18 or (declared.isdigit() and int(declared) > limit)
    ):
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # chunked bodies, or a Content-Length that lies
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"request body is larger than the {limit}-byte limit (HELIUS_MAX_REQUEST_BODY_BYTES)",
    )


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
        raise RequestValidationError(_reported(exc)) from exc


def _reported(exc: ValidationError) -> list[dict[str, Any]]:
    """The errors a 422 shows: never the input (it can be megabytes), the field named by its
    location with long names cut, the first few errors and how many more there were."""
    errors = exc.errors(include_url=False, include_input=False)
    shown: list[dict[str, Any]] = []
    for error in errors[:_MAX_REPORTED_ERRORS]:
        loc = tuple(_cut(part) if isinstance(part, str) else part for part in error["loc"])
        shown.append({**error, "loc": ("body", *loc)})
    if len(errors) > _MAX_REPORTED_ERRORS:
        more = len(errors) - _MAX_REPORTED_ERRORS
        shown.append(_body_error("too_many_errors", f"{more} more errors not shown"))
    return shown


def _cut(name: str) -> str:
    return name if len(name) <= _MAX_LOC_CHARS else f"{name[: _MAX_LOC_CHARS - 3]}..."


def _body_error(kind: str, message: str) -> dict[str, Any]:
    return {"type": kind, "loc": ("body",), "msg": message}
