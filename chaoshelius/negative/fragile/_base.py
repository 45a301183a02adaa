"""What the fragile variants share: the app's components, hooks on the refresher's record
and on the lifespan, and the stack's serving-peers markers."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from helius_reco.api.deps import Components
from helius_reco.lifecycle.refresher import RefreshOutcome

_Next = Callable[[Request], Awaitable[Response]]
PEER_SERVING_SECONDS = 10.0  # a fresh deploy's replicas start within seconds of each other


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


def _wrap_lifespan(app: FastAPI, before: Callable[[FastAPI], Awaitable[None]]) -> None:
    original = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        async with original(app_) as state:
            await before(app)
            yield state

    app.router.lifespan_context = lifespan


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
