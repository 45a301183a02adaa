"""Known-fragile recommender variants (uvicorn app factories) for negative controls only.

Each wraps the real app (`helius_reco.main.create_app`) and adds **one** mistake that real
services make, most of them subtle (a small error rate, one pod lying, a slower path), so that
each check of the catalogue is shown to catch a plausible defect, not only a total outage.
They live outside the service package, so nothing here can ship by accident.

Run with `uvicorn chaoshelius.negative.fragile:<name> --factory`; the stack profiles in
`profiles/` do this through `reco_app`. The catalogue (`controls.yml`) says which experiment
and which probe must catch each one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from helius_reco.api.deps import Components
from helius_reco.lifecycle.refresher import RefreshOutcome
from helius_reco.lifecycle.registry import ModelRef, ModelRegistry
from helius_reco.lifecycle.store import BASELINE_VERSION, ModelSource, ServedModel
from helius_reco.main import create_app
from helius_reco.model.recommender import RecoModel
from helius_reco.model.training import load_baseline
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chaoshelius import registry

__all__ = [
    "alias_cached_app",
    "baseline_on_failure_app",
    "cold_first_requests_app",
    "fallback_clears_early_app",
    "fallback_errors_app",
    "health_needs_mlflow_app",
    "hot_path_mlflow_app",
    "ignores_cache_app",
    "label_only_app",
    "lying_pod_app",
    "no_fallback_app",
    "one_pod_fallback_errors_app",
    "page_tokens_app",
    "ready_before_warm_app",
    "refresh_blocks_requests_app",
    "refresh_stops_after_recovery_app",
    "slow_everywhere_app",
    "slow_fallback_app",
    "slow_recovery_app",
    "slow_start_app",
    "startup_needs_mlflow_app",
    "swallowed_errors_app",
]

_Next = Callable[[Request], Awaitable[Response]]
HOT_PATH_TIMEOUT_SECONDS = 30.0
FALLBACK_ERROR_EVERY = 40  # 2.5 % of predictions while in fallback
SLOW_FALLBACK_SECONDS = 0.04  # +40 ms per prediction while in fallback
SLOW_EVERYWHERE_SECONDS = 0.03  # +30 ms on every prediction, before the fault as during it
CLEARS_AFTER_SECONDS = 6.0  # the gauge "gives up" reporting after this long
BREAKER_OPEN_SECONDS = 120.0
RECOVERY_COOL_DOWN_SECONDS = 600.0  # "let the registry warm up" after an outage
PAGE_SIZE = 100  # items ranked and kept per answer for its next pages
ALIAS_CACHE_SECONDS = 600.0
SLOW_START_SECONDS = 60.0  # past the await (30 s) + settle (10 s) + the after-checks
PEER_SERVING_SECONDS = 10.0  # a fresh deploy's replicas start within seconds of each other
LYING_ZONE = "zone-b"
# one pod of three fails 1 prediction in 27 (3.7 %) while in fallback: 1.2 % of the fleet's
ONE_POD_ERROR_EVERY = 27
ONE_POD_ZONE = "zone-b"


def _components(app: FastAPI) -> Components:
    components: Components = app.state.components
    return components


def _wrap_record(app: FastAPI, after: Callable[[RefreshOutcome], RefreshOutcome | None]) -> None:
    """Run `after(outcome)` around every refresh outcome the refresher records; it may return
    a replacement outcome to record instead."""
    refresher = _components(app).refresher
    original = refresher._record

    def record(outcome: RefreshOutcome) -> None:
        replaced = after(outcome)
        original(replaced if replaced is not None else outcome)

    refresher._record = record  # type: ignore[method-assign]


# ------------------------------------------------------------ total failures (the originals)
def hot_path_mlflow_app() -> FastAPI:
    """A registry lookup on every `/predict`, with a generous 30 s client timeout and no
    fallback (the "just call MLflow" design)."""
    app = create_app()
    settings = _components(app).settings
    client = httpx.AsyncClient(timeout=HOT_PATH_TIMEOUT_SECONDS)

    @app.middleware("http")
    async def ask_registry_first(request: Request, call_next: _Next) -> Response:
        if request.url.path != "/predict":
            return await call_next(request)
        try:
            answer = await registry.ask_alias(
                client, str(settings.mlflow_tracking_uri), settings.model_name, settings.model_alias
            )
        except httpx.HTTPError as exc:
            return JSONResponse({"detail": f"model registry unreachable: {exc!r}"}, 502)
        if answer.status_code != 200:
            return JSONResponse({"detail": f"model registry answered {answer.status_code}"}, 502)
        return await call_next(request)

    return app


def no_fallback_app() -> FastAPI:
    """503 while the registry cannot confirm the model ("never serve a possibly stale one")."""
    app = create_app()
    refresher = _components(app).refresher

    @app.middleware("http")
    async def refuse_when_unconfirmed(request: Request, call_next: _Next) -> Response:
        if request.url.path == "/predict" and refresher.in_fallback:
            return JSONResponse({"detail": "model not confirmed by the registry"}, 503)
        return await call_next(request)

    return app


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
    app = create_app()
    components = _components(app)
    if components.settings.zone != ONE_POD_ZONE:
        return app
    # innermost, inside the request-metrics middleware: the pod counts these 500s on its
    # /predict route as its own, as it would a failing route (`@app.middleware` would wrap them
    # outside, unseen); plain ASGI, so the other answers cost nothing more
    app.user_middleware.append(Middleware(_FailEvery, refresher=components.refresher))
    return app


class _FailEvery:
    """Every ONE_POD_ERROR_EVERY-th prediction while in fallback: routed and ranked, then
    answered 500 instead."""

    def __init__(self, app: ASGIApp, refresher: Any) -> None:
        self.app = app
        self.refresher = refresher
        self.counter = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != "/predict"
            or not self.refresher.in_fallback
            or next(self.counter) % ONE_POD_ERROR_EVERY
        ):
            await self.app(scope, receive, send)
            return

        async def drop(message: Message) -> None:
            return None

        await self.app(scope, receive, drop)
        answer = JSONResponse({"detail": "user unknown to this pod's cached model"}, 500)
        await answer(scope, receive, send)


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


def slow_everywhere_app() -> FastAPI:
    """Every prediction is 30 ms slower, from the start: an awaited per-request call (the
    user's recent history from a remote store) added to the hot path. Before the fault as
    during it, so the relative allowance (p50 x2 + 5 ms of the p50 *before*) passes it; the
    service's absolute SLO (`latency_p99_ratio`'s `slo_p50_ms`) does not."""
    app = create_app()

    @app.middleware("http")
    async def slow_down(request: Request, call_next: _Next) -> Response:
        if request.url.path == "/predict":
            await asyncio.sleep(SLOW_EVERYWHERE_SECONDS)
        return await call_next(request)

    return app


def refresh_blocks_requests_app() -> FastAPI:
    """Predictions take the refresh lock (a blocking `threading.Lock` on the event loop), so
    every request waits while a refresh is in flight: harmless while MLflow answers in ms,
    stalls clients when it is slow. Caught by `latency_p99_ratio` in mlflow-latency."""
    app = create_app()
    refresher = _components(app).refresher

    @app.middleware("http")
    async def wait_for_refresh(request: Request, call_next: _Next) -> Response:
        if request.url.path == "/predict":
            with refresher._refresh_lock:  # blocks the whole event loop: the mistake
                pass
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


# ------------------------------------------------------------ recovery
def slow_recovery_app() -> FastAPI:
    """A circuit breaker "to spare the registry": after 3 failed refreshes in a row it stops
    asking for 2 minutes, so the service notices the registry is back up to 2 minutes late.
    Caught by `fallback_cleared_within` (and `query_value`: still in fallback when judged)."""
    app = create_app()
    refresher = _components(app).refresher
    base = refresher.interval_seconds
    failures = 0

    def open_breaker(outcome: RefreshOutcome) -> None:
        nonlocal failures
        failures = 0 if outcome.ok else failures + 1
        refresher.interval_seconds = BREAKER_OPEN_SECONDS if failures >= 3 else base
        return None

    _wrap_record(app, open_breaker)
    return app


@dataclasses.dataclass
class _CachedAlias:
    """A registry whose alias lookups are cached for 10 minutes "to spare the registry"."""

    inner: ModelRegistry
    ttl_seconds: float
    _ref: ModelRef | None = None
    _at: float = 0.0

    def resolve(self) -> ModelRef:
        if self._ref is None or time.monotonic() - self._at > self.ttl_seconds:
            self._ref = self.inner.resolve()
            self._at = time.monotonic()
        return self._ref

    def fetch(self, ref: ModelRef) -> bytes:
        return self.inner.fetch(ref)


def alias_cached_app() -> FastAPI:
    """The alias is resolved once and cached for 10 minutes: a model promoted meanwhile never
    reaches the pods (and they never notice the registry is gone). Caught by
    `models_converged_within` in model-promoted-during-partition."""
    app = create_app()
    refresher = _components(app).refresher
    if refresher.model_registry is not None:
        refresher.model_registry = _CachedAlias(refresher.model_registry, ALIAS_CACHE_SECONDS)
    return app


# ------------------------------------------------------------ start-up and liveness
def health_needs_mlflow_app() -> FastAPI:
    """`/health` (the liveness endpoint) answers 503 while the registry cannot be reached, so
    the kubelet (the local stack's supervisor) restarts every pod once an MLflow outage
    outlasts the liveness budget (3 x 10 s). Caught by `pods_survived` in mlflow-outage."""
    app = create_app()
    refresher = _components(app).refresher

    @app.middleware("http")
    async def health_checks_registry(request: Request, call_next: _Next) -> Response:
        if request.url.path == "/health" and not refresher.mlflow_connected:
            return JSONResponse({"status": "registry unreachable"}, 503)
        return await call_next(request)

    return app


def _wrap_lifespan(app: FastAPI, before: Callable[[FastAPI], Awaitable[None]]) -> None:
    original = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        async with original(app_) as state:
            await before(app)
            yield state

    app.router.lifespan_context = lifespan


def startup_needs_mlflow_app() -> FastAPI:
    """Refuses to start unless the registry confirms the model ("never start on a stale
    model"): a pod replaced during an MLflow outage crash-loops instead of serving its cache.
    Caught by `replicas_recovered_within` in reco-cold-start-during-outage."""
    app = create_app()

    async def require_registry(app_: FastAPI) -> None:
        outcome = await asyncio.to_thread(_components(app_).refresher.refresh_once)
        if not outcome.ok:
            raise RuntimeError(f"registry unreachable at start-up ({outcome.detail})")

    _wrap_lifespan(app, require_registry)
    return app


def slow_start_app() -> FastAPI:
    """A replica that joins running peers first syncs their precomputed top-k, for 60 s, before
    serving: a killed pod's replacement is not ready for a long time. Caught by
    `replicas_recovered_within`, `pods_replaced` and the after-method `pods_ready` in
    reco-pod-kill. The replicas of a fresh deploy have no peer serving yet (none has served
    for `PEER_SERVING_SECONDS`) and start at once, so switching the stack to this profile does
    not cost the suite a minute. Peers are the pods of the stack's cache directory that wrote
    their pid on serving and are still alive."""
    app = create_app()

    async def sync_from_peers(app_: FastAPI) -> None:
        peers = _peers_dir()
        if _serving_peers(peers):
            await asyncio.sleep(SLOW_START_SECONDS)
        _mark_serving(peers)

    _wrap_lifespan(app, sync_from_peers)
    return app


def cold_first_requests_app() -> FastAPI:
    """A replica that builds its scoring index lazily, on the request path: a pod that joins
    serving peers (a replacement) answers its first `COLD_REQUESTS` predictions 400 ms late
    each. A fresh deploy's pods are warmed before the load starts, so only a replacement
    under load shows it: the tail of reco-pod-kill goes past the service's SLO (p99 <= 300 ms),
    inside its relative allowance (3x + 1 s where a process restarts). Caught by
    `latency_p99_ratio` with the restart setting."""
    return _replacement_first_predictions(_slow_prediction)


def ready_before_warm_app() -> FastAPI:
    """`/ready` says yes before the model is warmed: a replacement answers its first
    `COLD_REQUESTS` predictions 503 ("model warming up"). About 3 % of the predictions over a
    pod kill and its recovery, and ~25 % of a 5 s window: past the 98 % / 80 % floors that
    allow for the killed pod's lost in-flight requests. Caught by `client_success_ratio` with
    the lost-in-flight setting."""
    return _replacement_first_predictions(_warming_up)


COLD_REQUESTS = 300  # ~3.6 s of a replacement's share (1/3) of 250 requests/s
COLD_REQUEST_SECONDS = 0.4


async def _slow_prediction(request: Request, call_next: _Next) -> Response:
    await asyncio.sleep(COLD_REQUEST_SECONDS)
    return await call_next(request)


async def _warming_up(request: Request, call_next: _Next) -> Response:
    return JSONResponse({"detail": "model warming up"}, 503)


def _replacement_first_predictions(
    cold: Callable[[Request, _Next], Awaitable[Response]],
) -> FastAPI:
    """The real app, where a replica that joined serving peers handles its first
    `COLD_REQUESTS` predictions with `cold` instead."""
    app = create_app()
    left = 0

    async def join(app_: FastAPI) -> None:
        nonlocal left
        peers = _peers_dir()
        left = COLD_REQUESTS if _serving_peers(peers) else 0
        _mark_serving(peers)

    @app.middleware("http")
    async def first_predictions(request: Request, call_next: _Next) -> Response:
        nonlocal left
        if request.url.path != "/predict" or left <= 0:
            return await call_next(request)
        left -= 1
        return await cold(request, call_next)

    _wrap_lifespan(app, join)
    return app


def _peers_dir() -> Path:
    """Where the recommender pods of the stack mark that they serve (beside their caches)."""
    peers = Path(os.environ.get("HELIUS_CACHE_DIR", ".")).resolve().parent / "serving-peers"
    peers.mkdir(parents=True, exist_ok=True)
    return peers


def _mark_serving(peers: Path) -> None:
    (peers / os.environ.get("HELIUS_POD_NAME", str(os.getpid()))).write_text(str(os.getpid()))


def _serving_peers(peers: Path) -> list[str]:
    """Pods that have been serving for PEER_SERVING_SECONDS and whose process is alive."""
    found = []
    for marker in peers.iterdir():
        try:
            pid = int(marker.read_text())
            age = time.time() - marker.stat().st_mtime
            os.kill(pid, 0)  # alive?
        except (OSError, ValueError):
            continue
        if pid != os.getpid() and age >= PEER_SERVING_SECONDS:
            found.append(marker.name)
    return found


# ------------------------------------------------------------ staleness and memory
def refresh_stops_after_recovery_app() -> FastAPI:
    """A breaker "to spare a registry that just came back": after 3 failed refreshes in a row,
    the first success backs the refresh off to 10 minutes while the registry warms up, and
    nothing brings the interval back. The pod confirms the registry once (fallback clears, the
    promoted model loads), then stops asking: every later promotion or outage goes unnoticed.
    Caught by `refresh_fresh_after_recovery` (the fallback gauge and the model stay right)."""
    app = create_app()
    refresher = _components(app).refresher
    failures = 0

    def cool_down(outcome: RefreshOutcome) -> None:
        nonlocal failures
        if not outcome.ok:
            failures += 1
            return None
        if failures >= 3:
            refresher.interval_seconds = RECOVERY_COOL_DOWN_SECONDS  # the mistake: never reset
        failures = 0
        return None

    _wrap_record(app, cool_down)
    return app


def page_tokens_app() -> FastAPI:
    """Pagination "for free": every answer ranks the user's top 100 once and keeps them under
    a page token (`X-Helius-Page-Token`) for the next pages; the tokens never expire, so every
    prediction adds ~15 KiB that is never freed (tens of MiB per pod over a run). Caught by
    `memory_growth_within`."""
    app = create_app()
    store = _components(app).store
    pages: dict[str, list[tuple[str, float]]] = {}

    @app.middleware("http")
    async def keep_next_pages(request: Request, call_next: _Next) -> Response:
        if request.url.path != "/predict":
            return await call_next(request)
        raw = await request.body()
        response = await call_next(request)
        served = store.current
        if response.status_code != 200 or served is None:
            return response
        try:
            body = json.loads(raw)
            user, exclude = str(body["user_id"]), list(body.get("exclude", []))
        except (ValueError, KeyError, TypeError, AttributeError):
            return response
        token = uuid.uuid4().hex
        pages[token] = list(served.model.recommend(user, PAGE_SIZE, exclude).items)
        response.headers["X-Helius-Page-Token"] = token
        return response

    return app


# ------------------------------------------------------------ the model users were served
def label_only_app() -> FastAPI:
    """A promotion moves the version label but not the model: once a pod serves a registry
    model, a new version of the alias is "applied" by relabelling the model in memory ("the
    artifacts are the same, skip the download"). Every metric and answer says the new version;
    the answers' digest stays the old one. Caught by `promoted_model_served_within` in
    model-promoted-during-partition (`models_converged_within` reads only the label)."""
    app = create_app()
    refresher = _components(app).refresher
    original = refresher._serve

    def serve(ref: ModelRef, data: bytes, model: RecoModel) -> None:
        current = refresher.store.current
        if current is None or current.source != ModelSource.REGISTRY:
            original(ref, data, model)
            return
        refresher.store.swap(dataclasses.replace(current, version=ref.version))
        refresher.metrics.set_model(ref.version, ModelSource.REGISTRY)

    refresher._serve = serve  # type: ignore[method-assign]
    return app


def baseline_on_failure_app() -> FastAPI:
    """On the first failed refresh the pod swaps to the packaged baseline ("never serve a model
    the registry no longer vouches for") although it had a good model in memory, until the
    registry answers again. Its fallback gauge says so; the clients get the popularity list.
    Caught by `no_pod_downgraded` in rds-path-cut."""
    app = create_app()
    refresher = _components(app).refresher
    baseline = load_baseline()

    def downgrade(outcome: RefreshOutcome) -> None:
        current = refresher.store.current
        if not outcome.ok and current is not None and current.source != ModelSource.BASELINE:
            served = ServedModel(
                baseline, BASELINE_VERSION, ModelSource.BASELINE, baseline.fingerprint()
            )
            refresher.store.swap(served)
            refresher.metrics.set_model(served.version, served.source)

    _wrap_record(app, downgrade)
    return app


def ignores_cache_app() -> FastAPI:
    """A pod starts from the packaged baseline whatever its on-disk cache holds (the cache is
    written, never read back: "a fresh pod should not trust the disk"), so a replacement
    started while the registry is gone serves the popularity list until it is back. Caught by
    `replacement_served_cache` in reco-cold-start-during-outage."""
    app = create_app()
    refresher = _components(app).refresher
    original = refresher.load_local

    def load_local() -> ServedModel:
        cache, refresher.cache = refresher.cache, None
        try:
            return original()
        finally:
            refresher.cache = cache

    refresher.load_local = load_local  # type: ignore[method-assign]
    return app
