"""Local driver: the embedded stack's control API (docs/architecture.md, "Control API").

Every call has a timeout (`helius_http_timeout_seconds`); transport errors and 4xx/5xx answers
become `TargetError` with a sentence naming the URL and what to do.
"""

from __future__ import annotations

from typing import Any

import httpx

from chaoshelius.config import HarnessConfig
from chaoshelius.drivers.base import FaultRef, PathMode, PodInfo
from chaoshelius.exceptions import TargetError
from chaoshelius.topology import APP_LABEL

__all__ = ["LocalDriver"]


class LocalDriver:
    """Client of the local stack's control API."""

    name = "local"

    def __init__(self, config: HarnessConfig, transport: httpx.BaseTransport | None = None):
        self._base = config.helius_control_url.rstrip("/")
        self._timeout = config.helius_http_timeout_seconds
        self._transport = transport

    # ---------------------------------------------------------------- pods
    def list_pods(self, app: str, zone: str | None = None) -> list[PodInfo]:
        selector = _selector(app, zone)
        body = self._request("GET", "/pods", params={"selector": selector})
        items = body.get("pods", []) if isinstance(body, dict) else body
        return [_pod(item) for item in items]

    def kill_pods(self, app: str, count: int | None = None, zone: str | None = None) -> list[str]:
        body = self._request(
            "POST", "/pods/kill", json={"selector": _selector(app, zone), "count": count}
        )
        killed = body.get("killed", body.get("pods", [])) if isinstance(body, dict) else body
        killed = killed or []
        return [item if isinstance(item, str) else _pod(item).name for item in killed]

    # ---------------------------------------------------------------- faults
    def scale(self, app: str, replicas: int, ttl_seconds: float) -> FaultRef:
        body = self._request(
            "POST", f"/apps/{app}/scale", json={"replicas": replicas, "ttl_seconds": ttl_seconds}
        )
        return _fault(body)

    def restore_scale(self, app: str) -> list[str]:
        return _removed(self._request("DELETE", f"/apps/{app}/scale"))

    def cut_path(
        self, edge: str, mode: PathMode, latency_ms: int | None, ttl_seconds: float
    ) -> FaultRef:
        payload: dict[str, Any] = {"mode": mode, "ttl_seconds": ttl_seconds}
        if latency_ms is not None:
            payload["latency_ms"] = latency_ms
        return _fault(self._request("POST", f"/paths/{edge}/faults", json=payload))

    def restore_path(self, edge: str) -> list[str]:
        return _removed(self._request("DELETE", f"/paths/{edge}/faults"))

    def drain_zone(self, zone: str, ttl_seconds: float) -> FaultRef:
        return _fault(
            self._request("POST", f"/zones/{zone}/drain", json={"ttl_seconds": ttl_seconds})
        )

    def uncordon_zone(self, zone: str) -> list[str]:
        return _removed(self._request("POST", f"/zones/{zone}/uncordon"))

    def active_faults(self) -> list[FaultRef]:
        body = self._request("GET", "/faults")
        items = body.get("faults", []) if isinstance(body, dict) else body
        return [_fault(item) for item in items]

    # ---------------------------------------------------------------- transport
    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self._base}{path}"
        try:
            with httpx.Client(timeout=self._timeout, transport=self._transport) as client:
                response = client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise TargetError(
                f"the local stack's control API did not answer {method} {url} within "
                f"{self._timeout:g} s; check `chaoshelius stack status`"
            ) from exc
        except httpx.HTTPError as exc:
            raise TargetError(
                f"the local stack's control API at {self._base} is unreachable ({exc}); "
                "start it with `chaoshelius stack up` or set helius_control_url"
            ) from exc
        if response.status_code >= 400:
            raise TargetError(
                f"the control API refused {method} {path}: HTTP {response.status_code} "
                f"{_error_text(response)}"
            )
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError as exc:
            raise TargetError(f"the control API answered {method} {path} with non-JSON") from exc


def _selector(app: str, zone: str | None) -> str:
    return f"{APP_LABEL}={app}" + (f",zone={zone}" if zone else "")


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return str(body)[:200]


def _pod(item: dict[str, Any]) -> PodInfo:
    labels = item.get("labels", {}) or {}
    ready = item.get("ready")
    if ready is None:
        ready = str(item.get("state", item.get("status", ""))).lower() in {"ready", "running"}
    return PodInfo(
        name=str(item.get("name", item.get("pod", labels.get("pod", "")))),
        app=str(item.get("app", labels.get("app", ""))),
        zone=item.get("zone", labels.get("zone")),
        ready=bool(ready),
    )


def _removed(body: Any) -> list[str]:
    """Ids of the faults an undo removed (`{"removed": [fault, ...]}`)."""
    removed = body.get("removed", []) if isinstance(body, dict) else []
    return [str(item["id"]) if isinstance(item, dict) else str(item) for item in removed or []]


def _fault(body: dict[str, Any]) -> FaultRef:
    item = body.get("fault", body)
    if "id" not in item:
        raise TargetError(f"the control API returned no fault id: {str(body)[:200]}")
    return FaultRef(
        id=str(item["id"]),
        kind=str(item.get("kind", "")),
        target=str(item.get("target", "")),
        started_at=item.get("started_at"),
        expires_at=item.get("expires_at"),
        details=dict(item.get("params", {}) or {}),
    )
