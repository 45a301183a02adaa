"""A small synchronous client of the control API (the CLI and the tests use it)."""

from __future__ import annotations

from typing import Any

import httpx

from chaoshelius.stack.errors import StackError


class ControlClient:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise StackError(f"control API {self.url} unreachable: {exc}") from exc
        body: dict[str, Any] = response.json()
        if response.status_code >= 400:
            raise StackError(f"{method} {path}: {body.get('error', body)}")
        return body

    def status(self) -> dict[str, Any]:
        return self.request("GET", "/status")

    def pods(self, selector: str = "") -> list[dict[str, Any]]:
        pods: list[dict[str, Any]] = self.request("GET", "/pods", params={"selector": selector})[
            "pods"
        ]
        return pods

    def kill(self, selector: str, count: int | None = None) -> list[str]:
        killed: list[str] = self.request(
            "POST", "/pods/kill", json={"selector": selector, "count": count}
        )["killed"]
        return killed

    def cut(self, edge: str, mode: str, ttl_seconds: float, latency_ms: int = 0) -> dict[str, Any]:
        body = {"mode": mode, "ttl_seconds": ttl_seconds, "latency_ms": latency_ms}
        fault: dict[str, Any] = self.request("POST", f"/paths/{edge}/faults", json=body)["fault"]
        return fault

    def restore(self, edge: str) -> list[dict[str, Any]]:
        removed: list[dict[str, Any]] = self.request("DELETE", f"/paths/{edge}/faults")["removed"]
        return removed

    def drain(self, zone: str, ttl_seconds: float) -> dict[str, Any]:
        fault: dict[str, Any] = self.request(
            "POST", f"/zones/{zone}/drain", json={"ttl_seconds": ttl_seconds}
        )["fault"]
        return fault

    def uncordon(self, zone: str) -> list[dict[str, Any]]:
        removed: list[dict[str, Any]] = self.request("POST", f"/zones/{zone}/uncordon")["removed"]
        return removed

    def scale(self, app: str, replicas: int, ttl_seconds: float) -> dict[str, Any]:
        body = {"replicas": replicas, "ttl_seconds": ttl_seconds}
        fault: dict[str, Any] = self.request("POST", f"/apps/{app}/scale", json=body)["fault"]
        return fault

    def unscale(self, app: str) -> list[dict[str, Any]]:
        removed: list[dict[str, Any]] = self.request("DELETE", f"/apps/{app}/scale")["removed"]
        return removed

    def faults(self) -> list[dict[str, Any]]:
        faults: list[dict[str, Any]] = self.request("GET", "/faults")["faults"]
        return faults

    def remove_fault(self, fault_id: str) -> list[dict[str, Any]]:
        removed: list[dict[str, Any]] = self.request("DELETE", f"/faults/{fault_id}")["removed"]
        return removed
