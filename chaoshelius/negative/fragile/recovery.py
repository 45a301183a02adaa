"""Recovery after the registry's return: breakers that stop asking, or ask too rarely."""

from __future__ import annotations

from fastapi import FastAPI
from helius_reco.lifecycle.refresher import RefreshOutcome
from helius_reco.main import create_app

from chaoshelius.negative.fragile._base import _components, _wrap_record

BREAKER_OPEN_SECONDS = 120.0
RECOVERY_COOL_DOWN_SECONDS = 600.0  # "let the registry warm up" after an outage


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
