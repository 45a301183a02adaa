"""Request metrics as a plain ASGI middleware (no per-request task or body copy)."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from helius_reco.metrics import Metrics

UNMATCHED_ROUTE = "unmatched"  # bounded label for 404s: never the raw path
# the method label: a known method or "other", never the raw token (a permissive HTTP parser
# passes any token as the method, and each distinct label value is a series of its own)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # labelled children by (route, method, status): `labels()` takes a lock and validates
        # its arguments on every call; routes, methods and statuses are few
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics = self.metrics
        metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            metrics.in_flight.dec()
            route = scope.get("route")
            template = getattr(route, "path", UNMATCHED_ROUTE)
            method = scope["method"] if scope["method"] in KNOWN_METHODS else OTHER_METHOD
            key = (template, method, status)
            children = self._children.get(key)
            if children is None:
                children = (
                    metrics.requests.labels(template, method, str(status)),
                    metrics.latency.labels(template),
                )
                self._children[key] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - started)
