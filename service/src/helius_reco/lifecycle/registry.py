"""The MLflow model registry, seen through two calls: resolve the alias, fetch the artifact.

This is the only module that imports MLflow, and where its exceptions become `RegistryError`.
Only the refresher calls it, never a request.

The artifact is not fetched with MLflow's client (which streams any size to a temporary file
with a per-read timeout only, from wherever a version's `source` points) but here, with the
standard library: only from the tracking server's own artifact store (`mlflow-artifacts:`
sources, served through `mlflow server --serve-artifacts`, the only store the manifests and
the local stack use), streamed into memory and cut off as soon as it passes `max_bytes` (a
declared `Content-Length` over it is refused before the body is read), and abandoned at an
overall deadline, however slowly the bytes drip. A version whose source is anywhere else (any
other scheme, host or a local path) is refused as `ArtifactError`: nothing is fetched, the
previous model keeps serving.
"""

from __future__ import annotations

import base64
import http.client
import io
import logging
import os
import ssl
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, urlsplit

from helius_reco.exceptions import ArtifactError, RegistryError
from helius_reco.model.artifact import ARTIFACT_FILE, DEFAULT_MAX_BYTES

log = logging.getLogger(__name__)

_NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}
_STORE_SCHEME = "mlflow-artifacts"
_ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts/"
_READ_CHUNK = 64 * 1024
DEFAULT_DOWNLOAD_DEADLINE_SECONDS = 5.0
DEFAULT_READ_TIMEOUT_SECONDS = 2.0


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
        download_deadline_seconds: float = DEFAULT_DOWNLOAD_DEADLINE_SECONDS,
        read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS,
    ) -> None:
        # MLflow reads these from the process environment on every request.
        os.environ.update(client_env)
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.alias = alias
        self.max_bytes = max_bytes
        self.download_deadline_seconds = download_deadline_seconds
        self.read_timeout_seconds = read_timeout_seconds
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
        url = self.artifact_url(ref)
        started = time.monotonic()
        try:
            return _download(
                url,
                max_bytes=self.max_bytes,
                deadline=started + self.download_deadline_seconds,
                read_timeout=self.read_timeout_seconds,
                headers=_auth_headers(self.tracking_uri),
            )
        except RegistryError:
            raise
        except ArtifactError as exc:
            raise ArtifactError(f"download of {url}: {exc}") from exc
        except TimeoutError as exc:
            elapsed = time.monotonic() - started
            raise RegistryError(
                f"download of {url} failed after {elapsed:.1f} s: {exc or 'timed out'}",
                reason="unavailable",
            ) from exc
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise RegistryError(f"download of {url} failed: {exc}", reason="unavailable") from exc

    def artifact_url(self, ref: ModelRef) -> str:
        """The HTTP URL of `ref`'s artifact in the tracking server's artifact store, or
        `ArtifactError` if its source is anywhere else."""
        base = urlsplit(self.tracking_uri)
        source = urlsplit(ref.source)
        refused = ArtifactError(
            f"version {ref.version}'s source {ref.source[:200]!r} is outside the artifact store "
            f"({_STORE_SCHEME}: served by {self.tracking_uri}); refused, nothing fetched"
        )
        if base.scheme not in ("http", "https") or source.scheme != _STORE_SCHEME:
            raise refused
        default_port = 443 if base.scheme == "https" else 80
        if source.netloc and (
            source.hostname != base.hostname
            or (source.port or default_port) != (base.port or default_port)
        ):
            raise refused
        if source.query or source.fragment:
            raise refused
        segments = [part for part in source.path.split("/") if part]
        if not segments or any(part in (".", "..") for part in segments):
            raise refused
        path = quote("/".join([*segments, ARTIFACT_FILE]))
        server = base._replace(netloc=base.netloc.rpartition("@")[2], query="", fragment="")
        return f"{server.geturl().rstrip('/')}{_ARTIFACTS_API}{path}"  # no credentials in it


def _download(
    url: str, *, max_bytes: int, deadline: float, read_timeout: float, headers: dict[str, str]
) -> bytes:
    """GET `url` into memory: at most `max_bytes`, finished by `deadline` (monotonic)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    timeout = _remaining(deadline, read_timeout, url)
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            host, parts.port, timeout=timeout, context=_tls_context()
        )
    else:
        connection = http.client.HTTPConnection(host, parts.port, timeout=timeout)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", target, headers=headers)
        response = connection.getresponse()
        if response.status == 404:
            raise RegistryError(f"download of {url}: 404, no such artifact", reason="not_found")
        if response.status != 200:
            raise RegistryError(
                f"download of {url}: HTTP {response.status} {response.reason}",
                reason="unavailable",
            )
        declared = response.getheader("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
            raise ArtifactError(f"declares {int(declared)} bytes, above the {max_bytes}-byte limit")
        body = io.BytesIO()
        while True:
            if connection.sock is not None:
                connection.sock.settimeout(_remaining(deadline, read_timeout, url))
            chunk = response.read1(_READ_CHUNK)
            if not chunk:
                break
            body.write(chunk)
            if body.tell() > max_bytes:
                raise ArtifactError(f"is above the {max_bytes}-byte limit; download stopped")
        return body.getvalue()
    finally:
        connection.close()


def _remaining(deadline: float, read_timeout: float, url: str) -> float:
    """The socket timeout for the next step: the per-read timeout, or less near the deadline."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise RegistryError(
            f"download of {url} passed its deadline (HELIUS_REFRESH_DEADLINE_SECONDS); abandoned",
            reason="timeout",
        )
    return min(read_timeout, left)


def _auth_headers(tracking_uri: str) -> dict[str, str]:
    """MLflow's own credentials: the environment variables its client reads, else the
    tracking URI's user info."""
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    base = urlsplit(tracking_uri)
    user = os.environ.get("MLFLOW_TRACKING_USERNAME") or base.username
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD") or base.password
    if user and password:
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {basic}"}
    return {}


def _tls_context() -> ssl.SSLContext:
    """TLS as MLflow's client does it: a server certificate bundle if one is set."""
    return ssl.create_default_context(cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
