"""A small synchronous client of the control API (the CLI and the tests use it).

Every answer is validated against its model in `api_models` (the server's own), so a broken
contract fails here, naming the route; the methods return the plain JSON the tests index.
`ControlClient.for_state_dir(DIR)` finds a running stack's URL and token on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from chaoshelius.stack import api_models as api
from chaoshelius.stack import auth
from chaoshelius.stack.errors import ControlUnreachable, StackError
from chaoshelius.stack.ports import StackPorts
from chaoshelius.stack.state import StackPaths, read_state


class ControlClient:
    def __init__(self, url: str, token: str | None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=auth.bearer(token))

    @classmethod
    def for_state_dir(cls, state_dir: Path, timeout: float = 10.0) -> ControlClient:
        """The client of the stack whose stack.json is in `state_dir`."""
        paths = StackPaths(state_dir.resolve())
        state = read_state(paths.state_file)
        if state is None or state.base_port is None:
            raise StackError(f"no stack running in {state_dir}")
        url = f"http://127.0.0.1:{StackPorts(state.base_port).control}"
        return cls(url, auth.find_token(paths.root), timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, model: type[BaseModel] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        if method in ("POST", "PUT") and "json" not in kwargs and "content" not in kwargs:
            kwargs["json"] = {}  # the API takes JSON bodies only, `{}` when there is nothing
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ControlUnreachable(f"control API {self.url} unreachable: {exc}") from exc
        try:
            body: dict[str, Any] = response.json()
        except ValueError as exc:
            raise StackError(f"{method} {path}: HTTP {response.status_code}, not JSON") from exc
        if response.status_code >= 400:
            raise StackError(f"{method} {path}: {body.get('error', body)}")
        if model is not None:
            try:
                model.model_validate(body)
            except ValidationError as exc:
                raise StackError(f"{method} {path}: unexpected answer: {exc}") from exc
        return body

    def status(self) -> dict[str, Any]:
        return self.request("GET", "/status", api.Status)

    def pods(self, selector: str = "") -> list[dict[str, Any]]:
        body = self.request("GET", "/pods", api.PodList, params={"selector": selector})
        pods: list[dict[str, Any]] = body["pods"]
        return pods

    def kill(self, selector: str, count: int | None = None) -> list[str]:
        request = api.KillRequest(selector=selector, count=count)
        body = self.request("POST", "/pods/kill", api.Killed, json=request.model_dump())
        killed: list[str] = body["killed"]
        return killed

    def cut_path(
        self, edge: str, mode: str, ttl_seconds: float, latency_ms: int = 0
    ) -> dict[str, Any]:
        body = {"mode": mode, "ttl_seconds": ttl_seconds, "latency_ms": latency_ms}
        return self._fault("POST", f"/paths/{edge}/faults", body)

    def restore(self, edge: str) -> list[dict[str, Any]]:
        return self._removed("DELETE", f"/paths/{edge}/faults")

    def drain(self, zone: str, ttl_seconds: float) -> dict[str, Any]:
        return self._fault("POST", f"/zones/{zone}/drain", {"ttl_seconds": ttl_seconds})

    def uncordon(self, zone: str) -> list[dict[str, Any]]:
        return self._removed("POST", f"/zones/{zone}/uncordon")

    def scale(self, app: str, replicas: int, ttl_seconds: float) -> dict[str, Any]:
        body = {"replicas": replicas, "ttl_seconds": ttl_seconds}
        return self._fault("POST", f"/apps/{app}/scale", body)

    def restore_scale(self, app: str) -> list[dict[str, Any]]:
        return self._removed("DELETE", f"/apps/{app}/scale")

    def faults(self) -> list[dict[str, Any]]:
        faults: list[dict[str, Any]] = self.request("GET", "/faults", api.FaultList)["faults"]
        return faults

    def remove_fault(self, fault_id: str) -> list[dict[str, Any]]:
        return self._removed("DELETE", f"/faults/{fault_id}")

    def set_profile(self, name: str) -> dict[str, Any]:
        """Swap the running stack to the shipped profile `name` (PUT /profile)."""
        body = api.ProfileRequest(name=name).model_dump()
        return self.request("PUT", "/profile", api.ProfileApplied, json=body)

    def shutdown(self) -> None:
        self.request("POST", "/shutdown", api.Stopping)

    def _fault(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        fault: dict[str, Any] = self.request(method, path, api.Injected, json=body)["fault"]
        return fault

    def _removed(self, method: str, path: str) -> list[dict[str, Any]]:
        removed: list[dict[str, Any]] = self.request(method, path, api.Removed)["removed"]
        return removed
