"""Local driver: the embedded stack's control API (docs/stack.md, "Control API").

Requests and answers are the models of `chaoshelius.stack.api_models`, the ones the server
uses. Every call carries the stack's token (`HELIUS_CONTROL_TOKEN`, else
`<helius_stack_dir>/control.token`) and has a timeout (`helius_http_timeout_seconds`);
transport errors and 4xx/5xx answers become `TargetError` with a sentence naming the URL and
what to do.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from chaoshelius.config import HarnessConfig
from chaoshelius.drivers.base import FaultRef, PodInfo, check_grace_period
from chaoshelius.exceptions import ConfigurationError, TargetError
from chaoshelius.stack import api_models as api
from chaoshelius.stack import auth
from chaoshelius.topology import APP_LABEL, PathMode

__all__ = ["LocalDriver"]


class LocalDriver:
    """Client of the local stack's control API."""

    name = "local"

    def __init__(self, config: HarnessConfig, transport: httpx.BaseTransport | None = None):
        self._base = _loopback_control_url(config.helius_control_url)
        self._timeout = config.helius_http_timeout_seconds
        self._transport = transport
        self._stack_dir = config.helius_stack_dir

    # ---------------------------------------------------------------- pods
    def list_pods(self, app: str, zone: str | None = None) -> list[PodInfo]:
        selector = _selector(app, zone)
        body = self._request("GET", "/pods", api.PodList, params={"selector": selector})
        return [_pod(item) for item in body.pods]

    def kill_pods(
        self,
        app: str,
        count: int | None = None,
        zone: str | None = None,
        grace_period_seconds: int | None = 0,
    ) -> list[str]:
        """SIGKILL the pods' process groups (the stack has no graceful delete: any grace but
        0 is refused, nothing is sent)."""
        if check_grace_period(grace_period_seconds) != 0:
            raise TargetError(
                f"the local stack only kills pods (SIGKILL, grace 0), it cannot delete them "
                f"gracefully (grace_period_seconds={grace_period_seconds!r}); use 0, or "
                "target=kubernetes for a graceful delete"
            )
        request = _body(api.KillRequest, selector=_selector(app, zone), count=count)
        return self._request("POST", "/pods/kill", api.Killed, request).killed

    # ---------------------------------------------------------------- faults
    def scale(self, app: str, replicas: int, ttl_seconds: float) -> FaultRef:
        request = _body(api.ScaleRequest, replicas=replicas, ttl_seconds=ttl_seconds)
        return _fault(self._request("POST", f"/apps/{app}/scale", api.Injected, request).fault)

    def restore_scale(self, app: str) -> list[str]:
        return _removed(self._request("DELETE", f"/apps/{app}/scale", api.Removed))

    def cut_path(
        self, edge: str, mode: PathMode, latency_ms: int | None, ttl_seconds: float
    ) -> FaultRef:
        request = _body(
            api.PathFaultRequest, mode=mode, latency_ms=latency_ms or 0, ttl_seconds=ttl_seconds
        )
        fields = None if latency_ms is not None else {"mode", "ttl_seconds"}
        body = self._request("POST", f"/paths/{edge}/faults", api.Injected, request, fields)
        return _fault(body.fault)

    def restore_path(self, edge: str) -> list[str]:
        return _removed(self._request("DELETE", f"/paths/{edge}/faults", api.Removed))

    def drain_zone(self, zone: str, ttl_seconds: float) -> FaultRef:
        request = _body(api.DrainRequest, ttl_seconds=ttl_seconds)
        return _fault(self._request("POST", f"/zones/{zone}/drain", api.Injected, request).fault)

    def uncordon_zone(self, zone: str) -> list[str]:
        request = api.EmptyRequest()
        return _removed(self._request("POST", f"/zones/{zone}/uncordon", api.Removed, request))

    def active_faults(self) -> list[FaultRef]:
        return [_fault(item) for item in self._request("GET", "/faults", api.FaultList).faults]

    # ---------------------------------------------------------------- transport
    def _request[M: BaseModel](
        self,
        method: str,
        path: str,
        answer: type[M],
        body: BaseModel | None = None,
        fields: set[str] | None = None,
        params: dict[str, str] | None = None,
    ) -> M:
        url = f"{self._base}{path}"
        headers = auth.bearer(auth.find_token(self._stack_dir))
        json_body = body.model_dump(mode="json", include=fields) if body is not None else None
        try:
            with httpx.Client(timeout=self._timeout, transport=self._transport) as client:
                response = client.request(
                    method, url, json=json_body, params=params, headers=headers
                )
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
        if response.status_code == 401:
            raise TargetError(
                f"the control API refused {method} {path}: HTTP 401 {_error_text(response)}; "
                f"set HELIUS_CONTROL_TOKEN or the configuration key helius_stack_dir (now "
                f"{self._stack_dir}) to the stack's state directory"
            )
        if response.status_code >= 400:
            raise TargetError(
                f"the control API refused {method} {path}: HTTP {response.status_code} "
                f"{_error_text(response)}"
            )
        try:
            return answer.model_validate_json(response.content)
        except ValidationError as exc:
            raise TargetError(
                f"the control API answered {method} {path} with an unexpected body: "
                f"{response.text[:200]}"
            ) from exc


def _loopback_control_url(url: str) -> str:
    """The control URL, if it is http on a loopback address (127.0.0.0/8, ::1, localhost):
    every request carries the stack's control token, which must never leave this machine.
    Else `ConfigurationError`, raised before anything is sent."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        scheme = parts.scheme
    except ValueError:  # not a URL, or a host name other than localhost
        loopback, scheme = False, ""
    if scheme != "http" or not loopback:
        raise ConfigurationError(
            f"helius_control_url {url!r} is not http on a loopback address; the local stack's "
            "control API listens on this machine only: use http://127.0.0.1:<port> "
            "(or localhost, [::1])"
        )
    return url.rstrip("/")


def _body[M: BaseModel](model: type[M], **fields: Any) -> M:
    """A request model, or `TargetError` naming the bad argument (nothing is sent)."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TargetError(f"{where}: {first['msg']} (got {first.get('input')!r})") from exc


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


def _pod(item: api.Pod) -> PodInfo:
    return PodInfo(
        name=item.name, app=item.app, zone=item.zone, ready=item.ready, restarts=item.restarts
    )


def _removed(body: api.Removed) -> list[str]:
    """Ids of the faults an undo removed."""
    return [fault.id for fault in body.removed]


def _fault(item: api.Fault) -> FaultRef:
    return FaultRef(
        id=item.id,
        kind=item.kind,
        target=item.target,
        started_at=item.started_at,
        expires_at=item.expires_at,
        details=dict(item.params),
    )
