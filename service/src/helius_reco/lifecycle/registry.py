"""The MLflow model registry, seen through two calls: resolve the alias, fetch the artifact.

This is the only module that imports MLflow, and where its exceptions become `RegistryError`.
Only the refresher calls it, never a request.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from helius_reco.exceptions import ArtifactError, RegistryError
from helius_reco.model.artifact import ARTIFACT_FILE, DEFAULT_MAX_BYTES

log = logging.getLogger(__name__)

_NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


@dataclass(frozen=True)
class ModelRef:
    """A registered model version the alias points at."""

    version: str
    source: str  # artifact URI of the version (e.g. mlflow-artifacts:/1/<run>/artifacts/model)


class ModelRegistry(Protocol):
    """What the refresher needs from a registry (tests and negative controls supply others)."""

    def resolve(self) -> ModelRef:
        """The version the alias points at now. Raises RegistryError."""
        ...

    def fetch(self, ref: ModelRef) -> bytes:
        """The artifact bytes of `ref`. Raises RegistryError, or ArtifactError if absent/too big."""
        ...


class MlflowRegistry:
    """`models:/<name>@<alias>` on an MLflow tracking server, with MLflow's HTTP client bounded
    by `client_env` (timeout, retries, backoff) so that no single call hangs for minutes."""

    def __init__(
        self,
        tracking_uri: str,
        model_name: str,
        alias: str,
        *,
        client_env: dict[str, str],
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        # MLflow reads these from the process environment on every request.
        os.environ.update(client_env)
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.alias = alias
        self.max_bytes = max_bytes
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def resolve(self) -> ModelRef:
        from mlflow.exceptions import MlflowException

        try:
            version = self._client.get_model_version_by_alias(self.model_name, self.alias)
        except MlflowException as exc:
            reason = "not_found" if exc.error_code in _NOT_FOUND_CODES else "unavailable"
            raise RegistryError(f"alias lookup failed: {_first_line(exc)}", reason=reason) from exc
        except OSError as exc:  # requests' ConnectionError/Timeout are OSErrors
            raise RegistryError(f"alias lookup failed: {exc}", reason="unavailable") from exc
        return ModelRef(version=str(version.version), source=str(version.source))

    def fetch(self, ref: ModelRef) -> bytes:
        from mlflow.artifacts import download_artifacts
        from mlflow.exceptions import MlflowException

        uri = f"{ref.source.rstrip('/')}/{ARTIFACT_FILE}"
        with tempfile.TemporaryDirectory(prefix="helius-reco-fetch-") as tmp:
            try:
                local = Path(
                    download_artifacts(
                        artifact_uri=uri, dst_path=tmp, tracking_uri=self.tracking_uri
                    )
                )
            except MlflowException as exc:
                reason = "not_found" if exc.error_code in _NOT_FOUND_CODES else "unavailable"
                raise RegistryError(
                    f"download of {uri} failed: {_first_line(exc)}", reason=reason
                ) from exc
            except OSError as exc:
                raise RegistryError(
                    f"download of {uri} failed: {exc}", reason="unavailable"
                ) from exc
            if not local.is_file():
                raise ArtifactError(f"{uri} is not a file")
            size = local.stat().st_size
            if size > self.max_bytes:
                raise ArtifactError(f"{uri} is {size} bytes, above the {self.max_bytes}-byte limit")
            return local.read_bytes()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
