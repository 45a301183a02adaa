"""The model registry (MLflow's REST API): which version the champion alias points at.

The one place the alias lookup is written: the SLO probes ask it (`champion_version`), the
model actions read and move the alias through `call` / `champion`, the stack's bootstrap and
the negative controls' hot-path registry ask it asynchronously (`ask_alias`). Every call has
an HTTP timeout (the harness's `helius_http_timeout_seconds`, or the caller's own).

Artifacts go through the tracking server's artifact proxy (`mlflow server --serve-artifacts`,
`mlflow-artifacts:` URIs), as the service fetches them: `get_artifact` / `put_artifact`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from chaoshelius.config import HarnessConfig
from chaoshelius.exceptions import TargetError
from chaoshelius.topology import MODEL_ALIAS, MODEL_NAME

__all__ = [
    "ALIAS",
    "API",
    "alias_params",
    "ARTIFACTS_API",
    "alias_url",
    "artifact_path",
    "ask_alias",
    "call",
    "champion",
    "champion_version",
    "get_artifact",
    "put_artifact",
]

API = "/api/2.0/mlflow"
ALIAS = "/registered-models/alias"  # under API: GET reads an alias, POST moves it
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts/"  # the artifact proxy's files
STORE_SCHEME = "mlflow-artifacts"
MAX_ARTIFACT_BYTES = 64 * 1024 * 1024  # the service's own limit on a fetched artifact


def alias_url(base_url: str) -> str:
    """The alias endpoint of the MLflow at `base_url`."""
    return f"{base_url.rstrip('/')}{API}{ALIAS}"


def alias_params(model_name: str = MODEL_NAME, alias: str = MODEL_ALIAS) -> dict[str, str]:
    """The query of an alias lookup."""
    return {"name": model_name, "alias": alias}


def call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """One MLflow REST call (`path` under API) on `client` (its base_url: the MLflow); its JSON
    answer. Raises TargetError when MLflow does not answer or refuses."""
    try:
        response = client.request(method, f"{API}{path}", **kwargs)
    except httpx.HTTPError as exc:
        raise TargetError(
            f"MLflow at {client.base_url} did not answer {method} {path} ({exc}); "
            "check helius_mlflow_url and that MLflow is up"
        ) from exc
    if response.status_code != 200:
        raise TargetError(
            f"MLflow refused {method} {path}: HTTP {response.status_code} {response.text[:200]}"
        )
    body: dict[str, Any] = response.json()
    return body


def artifact_path(uri: str, name: str) -> str:
    """The proxy path (under ARTIFACTS_API) of the file `name` in the artifact directory `uri`
    (`mlflow-artifacts:/<experiment>/<run>/artifacts/model`). Raises TargetError for any
    other store: only the tracking server's own is reachable through its REST API."""
    parts = urlsplit(uri)
    segments = [part for part in parts.path.split("/") if part]
    if parts.scheme != STORE_SCHEME or not segments or any(p in (".", "..") for p in segments):
        raise TargetError(
            f"artifact location {uri[:200]!r} is not in MLflow's artifact store "
            f"({STORE_SCHEME}:, mlflow server --serve-artifacts)"
        )
    return quote("/".join([*segments, name]))


def get_artifact(client: httpx.Client, uri: str, name: str) -> bytes:
    """The bytes of the file `name` under `uri`, through the artifact proxy of `client`'s
    MLflow (at most MAX_ARTIFACT_BYTES). Raises TargetError."""
    path = artifact_path(uri, name)
    try:
        with client.stream("GET", f"{ARTIFACTS_API}{path}") as response:
            if response.status_code != 200:
                raise TargetError(
                    f"MLflow refused GET artifact {path}: HTTP {response.status_code}"
                )
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_ARTIFACT_BYTES:
                    raise TargetError(f"artifact {path} is above {MAX_ARTIFACT_BYTES} bytes")
    except httpx.HTTPError as exc:
        raise TargetError(f"MLflow at {client.base_url} did not send {path} ({exc})") from exc
    return bytes(body)


def put_artifact(client: httpx.Client, uri: str, name: str, data: bytes) -> None:
    """Upload `data` as the file `name` under `uri` through the artifact proxy. Raises
    TargetError."""
    path = artifact_path(uri, name)
    try:
        response = client.put(f"{ARTIFACTS_API}{path}", content=data)
    except httpx.HTTPError as exc:
        raise TargetError(f"MLflow at {client.base_url} did not take {path} ({exc})") from exc
    if response.status_code != 200:
        raise TargetError(
            f"MLflow refused PUT artifact {path}: HTTP {response.status_code} {response.text[:200]}"
        )


def champion(
    client: httpx.Client, model_name: str = MODEL_NAME, alias: str = MODEL_ALIAS
) -> dict[str, Any]:
    """MLflow's `model_version` object `alias` of `model_name` points at now."""
    version: dict[str, Any] = call(client, "GET", ALIAS, params=alias_params(model_name, alias))[
        "model_version"
    ]
    return version


def champion_version(config: HarnessConfig) -> str:
    """The version `reco@champion` points at now, asked from the MLflow at `helius_mlflow_url`
    with the harness's HTTP timeout. Raises TargetError when it cannot be read."""
    base = config.helius_mlflow_url.rstrip("/")
    try:
        with httpx.Client(base_url=base, timeout=config.helius_http_timeout_seconds) as client:
            return str(champion(client)["version"])
    except (TargetError, KeyError, TypeError, ValueError) as exc:
        raise TargetError(
            f"cannot read {MODEL_NAME}@{MODEL_ALIAS} from MLflow at {config.helius_mlflow_url} "
            f"({exc}); check helius_mlflow_url"
        ) from exc


async def ask_alias(
    client: httpx.AsyncClient,
    base_url: str,
    model_name: str = MODEL_NAME,
    alias: str = MODEL_ALIAS,
) -> httpx.Response:
    """The raw answer of an alias lookup at the MLflow at `base_url` (the caller judges the
    status: 200 registered, 404 not yet); raises httpx.HTTPError as the client does."""
    return await client.get(alias_url(base_url), params=alias_params(model_name, alias))
