"""The fallback path and what its gauge says: errors and latency users see while the registry is
gone, one pod worse than its peers, a gauge that lies, gives up or comes late, swallowed refresh
errors."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from helius_reco.lifecycle.refresher import RefreshOutcome
from helius_reco.main import create_app
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chaoshelius.negative.fragile._base import _components, _Next, _wrap_record

FALLBACK_ERROR_EVERY = 40  # 2.5 % of predictions while in fallback
SLOW_FALLBACK_SECONDS = 0.04  # +40 ms per prediction while in fallback
CLEARS_AFTER_SECONDS = 6.0  # the gauge "gives up" reporting after this long
LYING_ZONE = "zone-b"
# one pod of three fails 1 prediction in 27 (3.7 %) while in fallback: 1.2 % of the fleet's
ONE_POD_ERROR_EVERY = 27
ONE_POD_ZONE = "zone-b"
# one pod of three stalls 1 prediction in 50 for 0.3 s while in fallback: ~1.6 % of that pod's
# answers over mlflow-outage's fault and recovery (~80 % of it in fallback), past 1 % so its p99
# lands in the 0.25-0.5 s bucket, past the restart class's 3x the fleet's p99 before + 150 ms
# (~180-230 ms); ~0.5 % of the clients', whose p99 does not move
STALL_EVERY = 50
STALL_SECONDS = 0.3
STALL_ZONE = "zone-b"
# fallback reported after 12 failed refreshes in a row: 22-24 s at the local 2 s interval
FLAP_GUARD_FAILURES = 12


# ------------------------------------------------------------ what users see
def fallback_errors_app() -> FastAPI:
    """The fallback path fails a few requests: while in fallback, 1 prediction in 40 (2.5 %)
    answers 500, as when the cached model cannot rank users who joined after it was trained.
    Caught by `client_success_ratio` (99 %), not by a total-outage threshold."""
    app = create_app()
    refresher = _components(app).refresher
    counter = itertools.count(1)

    @app.middleware("http")
    async def fail_some(request: Request, call_next: _Next) -> Response:
        if (
            request.url.path == "/predict"
            and refresher.in_fallback
            and next(counter) % FALLBACK_ERROR_EVERY == 0
        ):
            return JSONResponse({"detail": "user unknown to the cached model"}, 500)
        return await call_next(request)

    return app


def one_pod_fallback_errors_app() -> FastAPI:
    """The zone-b pod's fallback path fails 1 prediction in 27 (3.7 %) with a 500, as when
    only that pod's cached model predates some users (it was the one restarted from an old
    cache); its peers are fine. Across three pods that is 1.2 % of the fleet's predictions
    while in fallback, less over the fault and its recovery: the client aggregate passes it;
    `pods_prediction_slo` judges each pod and catches it."""
    return _on_one_pod(ONE_POD_ZONE, _FailEvery)


def one_pod_fallback_stalls_app() -> FastAPI:
    """While in fallback, the zone-b pod stalls 1 prediction in `STALL_EVERY` for
    `STALL_SECONDS` (0.3 s), as when only that pod's fallback reads the cached model's item
    lists from its volume for users it has not seen, and that pod's volume is a slow network
    disk; its peers are fine. Its own p99 goes past 3x the fleet's before + 150 ms; the clients'
    aggregate, where its stalls are ~0.5 % of the answers, does not see it. Caught by
    `pods_prediction_slo` in mlflow-outage."""
    return _on_one_pod(STALL_ZONE, _StallEvery)


def _on_one_pod(zone: str, middleware: type[_EveryNthInFallback]) -> FastAPI:
    """The real app; in `zone` with `middleware` innermost, inside the request-metrics
    middleware, so the pod counts and times what it does on its /predict route as its own (as
    it would a failing or slow route; `@app.middleware` would wrap it outside, unseen)."""
    app = create_app()
    components = _components(app)
    if components.settings.zone == zone:
        app.user_middleware.append(Middleware(middleware, refresher=components.refresher))
    return app


class _EveryNthInFallback:
    """Plain ASGI (the other answers cost nothing more): every `every`-th prediction while in
    fallback goes to `nth`, the others straight through."""

    every = 1

    def __init__(self, app: ASGIApp, refresher: Any) -> None:
        self.app = app
        self.refresher = refresher
        self.counter = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == "/predict"
            and self.refresher.in_fallback
            and next(self.counter) % self.every == 0
        ):
            await self.nth(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def nth(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class _FailEvery(_EveryNthInFallback):
    """Routed and ranked, then answered 500 instead."""

    every = ONE_POD_ERROR_EVERY

    async def nth(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def drop(message: Message) -> None:
            return None

        await self.app(scope, receive, drop)
        answer = JSONResponse({"detail": "user unknown to this pod's cached model"}, 500)
        await answer(scope, receive, send)


class _StallEvery(_EveryNthInFallback):
    """Waits STALL_SECONDS, then answered as usual."""

    every = STALL_EVERY

    async def nth(self, scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(STALL_SECONDS)
        await self.app(scope, receive, send)


def slow_fallback_app() -> FastAPI:
    """The fallback path is slower: +40 ms per prediction while in fallback, as when it re-reads
    the cached model from disk per request. Caught by `latency_p99_ratio`."""
    app = create_app()
    refresher = _components(app).refresher

    @app.middleware("http")
    async def slow_down(request: Request, call_next: _Next) -> Response:
        if request.url.path == "/predict" and refresher.in_fallback:
            await asyncio.sleep(SLOW_FALLBACK_SECONDS)
        return await call_next(request)

    return app


# ------------------------------------------------------------ what the gauge says
def lying_pod_app() -> FastAPI:
    """The zone-b pod never reports fallback (its gauge stays 0): one pod lying. A `max()` over
    pods hides it; `fallback_engaged_within` judges every pod and catches it."""
    app = create_app()
    components = _components(app)
    if components.settings.zone == LYING_ZONE:
        original = components.refresher._record

        def record_then_lie(outcome: RefreshOutcome) -> None:
            original(outcome)
            components.metrics.fallback.set(0)

        components.refresher._record = record_then_lie  # type: ignore[method-assign]
    return app


def fallback_clears_early_app() -> FastAPI:
    """The gauge "gives up": after 6 s in fallback it reads 0 again although the registry is
    still unreachable (alert fatigue "fixed" in code). The alert (for: 10s) never fires;
    caught by `alert_fired` and by `fallback_engaged_within` (cleared before MLflow was back)."""
    app = create_app()
    components = _components(app)
    state: dict[str, float | None] = {"since": None}
    original = components.refresher._record

    def record(outcome: RefreshOutcome) -> None:
        original(outcome)
        if outcome.ok:
            state["since"] = None
            return
        since = state["since"] = state["since"] or time.monotonic()
        if time.monotonic() - since > CLEARS_AFTER_SECONDS:
            components.metrics.fallback.set(0)

    components.refresher._record = record  # type: ignore[method-assign]
    return app


def swallowed_errors_app() -> FastAPI:
    """Refresh errors are swallowed (`except Exception: pass`) and recorded as "unchanged":
    no failure counted, no fallback reported, although the registry is gone. Caught by
    `counter_grew` (refreshes really failed) in rds-path-cut."""
    app = create_app()
    refresher = _components(app).refresher

    def swallow(outcome: RefreshOutcome) -> RefreshOutcome | None:
        if outcome.ok:
            return None
        current = refresher.store.current
        version = current.version if current is not None else None
        return RefreshOutcome(True, None, version, False, "unchanged", outcome.duration_seconds)

    _wrap_record(app, swallow)
    return app


def fallback_flap_guard_app() -> FastAPI:
    """A "do not flap" guard on the gauge: fallback is reported only after
    `FLAP_GUARD_FAILURES` (12) failed refreshes in a row ("one blip must not page anyone"),
    cleared on the first success. The pod does fall back at once (it serves its cached model,
    counts every failure); only the gauge and the alert on it come late: 22-24 s into an MLflow
    outage at the local 2 s refresh, past the 20 s allowed. Caught by `fallback_engaged_within`
    in mlflow-outage."""
    app = create_app()
    components = _components(app)
    original = components.refresher._record
    gauge = components.metrics.fallback
    show = gauge.set
    failures = 0

    def record(outcome: RefreshOutcome) -> None:
        nonlocal failures
        failures = 0 if outcome.ok else failures + 1
        original(outcome)

    def guarded(value: float) -> None:
        # the gauge never shows the guarded failures, not even between two statements
        show(0 if 0 < failures < FLAP_GUARD_FAILURES else value)

    components.refresher._record = record  # type: ignore[method-assign]
    gauge.set = guarded  # type: ignore[method-assign]
    return app
