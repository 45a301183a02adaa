"""Fuzz every operation of the OpenAPI schema: no input may produce a 5xx."""

from __future__ import annotations

from pathlib import Path

import schemathesis
from helius_reco.core.config import Settings
from helius_reco.main import create_app
from hypothesis import HealthCheck, settings
from prometheus_client import CollectorRegistry


def _app():  # type: ignore[no-untyped-def]
    import tempfile

    app = create_app(
        Settings(cache_dir=Path(tempfile.mkdtemp(prefix="helius-fuzz-"))),
        registry=CollectorRegistry(),
    )
    refresher = app.state.components.refresher
    refresher.load_local()  # schemathesis does not run the lifespan: load as it would
    refresher.refresh_once()
    refresher.initial_attempt_done.set()
    return app


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case) -> None:
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, case.body, response.text)
    case.validate_response(response)
