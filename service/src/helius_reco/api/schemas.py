"""Request and response bodies (they are the OpenAPI schema the fuzz tests drive)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Identifier = Annotated[str, Field(min_length=1, max_length=128)]


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"user_id": "u0042", "k": 5, "exclude": ["i0007"]}]},
    )

    user_id: Identifier = Field(
        description="User to recommend for; unknown users get popular items."
    )
    k: int = Field(default=10, ge=1, le=100, description="How many items to return (top-k).")
    exclude: list[Identifier] = Field(
        default_factory=list, max_length=1000, description="Item ids never to return."
    )


class ScoredItem(BaseModel):
    item_id: str
    score: float


class PredictResponse(BaseModel):
    user_id: str
    items: list[ScoredItem] = Field(description="Best first.")
    known_user: bool = Field(description="False: the user is not in the model; popular items.")
    model_version: str
    model_source: Literal["registry", "cache", "baseline"]
    model_digest: str = Field(
        description="Short sha256 of the artifact the answering model was loaded from: the "
        "model itself, whatever its version label says."
    )


class HealthResponse(BaseModel):
    status: Literal["ok"]
    service: str
    version: str
    mlflow_connected: bool
    model_version: str | None
    model_source: Literal["registry", "cache", "baseline"] | None
    fallback_mode: bool
    pod: str
    zone: str


class ReadyResponse(BaseModel):
    ready: bool
    model_version: str | None
    model_source: Literal["registry", "cache", "baseline"] | None
    initial_refresh_done: bool


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description='Where: ["body", field, ...].')
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    """A 422: what is wrong with the request (FastAPI's shape)."""

    detail: list[ValidationIssue]
