"""The model registry (MLflow's REST API): which version the champion alias points at.

The one place the alias lookup is written: the SLO probes ask it (`champion_version`), the
model actions read and move the alias through `call` / `champion`, the stack's bootstrap and
the negative controls' hot-path registry ask it asynchronously (`ask_alias`). Every call has
an HTTP timeout (the harness's `helius_http_timeout_seconds`, or the caller's own).
"""

from __future__ import annotations

from typing import Any

import httpx

from chaoshelius.config import HarnessConfig
from chaoshelius.exceptions import TargetError
from chaoshelius.topology import MODEL_ALIAS, MODEL_NAME

__all__ = [
    "ALIAS",
    "API",
    "alias_params",
    "alias_url",
    "ask_alias",
    "call",
    "champion",
    "champion_version",
]

API = "/api/2.0/mlflow"
ALIAS = "/registered-models/alias"  # under API: GET reads an alias, POST moves it


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
