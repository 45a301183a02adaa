"""Settings from the environment (prefix `HELIUS_`), read once behind `get_settings()`."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service; see the settings table in service/README.md."""

    model_config = SettingsConfigDict(env_prefix="HELIUS_", extra="ignore")

    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking server URL; unset = never try the registry"
    )
    model_name: str = "reco"
    model_alias: str = "champion"
    refresh_interval_seconds: float = Field(default=10.0, gt=0)
    refresh_deadline_seconds: float = Field(default=5.0, gt=0)
    max_hung_refreshes: int = Field(
        default=2, ge=1, description="abandoned refresh threads allowed before skipping attempts"
    )
    mlflow_http_timeout_seconds: int = Field(default=2, ge=1)
    mlflow_http_max_retries: int = Field(default=1, ge=0)
    mlflow_http_backoff_factor: int = Field(default=0, ge=0)
    cache_dir: Path = Path(".helius-reco-cache")
    pod_name: str = Field(default_factory=lambda: os.environ.get("HOSTNAME", "local"))
    zone: str = "unknown"
    max_artifact_bytes: int = Field(
        default=64 * 1024 * 1024, gt=0, description="artifact file size limit (compressed)"
    )
    max_artifact_decompressed_bytes: int = Field(
        default=64 * 1024 * 1024,
        gt=0,
        description="limit on an artifact's arrays once inflated, each and summed, judged "
        "from the zip directory and .npy headers before anything is inflated",
    )
    max_history_neighbors: int = Field(
        default=1_000_000,
        gt=0,
        description="limit on one training user's history length x K (neighbours per item), "
        "the entries one ranking sums; an artifact with a user above it is rejected",
    )
    max_request_body_bytes: int = Field(
        default=1024 * 1024, gt=0, description="larger request bodies get a 413"
    )
    log_level: str = "INFO"

    def mlflow_client_env(self) -> dict[str, str]:
        """MLflow's own HTTP client knobs (integers only).

        One MLflow call then gives up after about timeout * (1 + retries) seconds.
        """
        return {
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(self.mlflow_http_timeout_seconds),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.mlflow_http_max_retries),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(self.mlflow_http_backoff_factor),
            "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
        }


@lru_cache
def get_settings() -> Settings:
    """The process settings (tests call `get_settings.cache_clear()` or inject their own)."""
    return Settings()
