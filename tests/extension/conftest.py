from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_control import FakeStack, serve

from chaoshelius import windows
from chaoshelius.stack import auth


@pytest.fixture(autouse=True)
def _fresh_windows() -> Iterator[None]:
    """Each test is a new 'run': no fault phase, no windows."""
    windows.reset()
    yield
    windows.reset()


@pytest.fixture
def fake_stack() -> Iterator[tuple[FakeStack, str]]:
    stack = FakeStack()
    for app in ("helius-reco", "mlflow"):
        for zone in ("zone-a", "zone-b", "zone-c"):
            stack.add_pod(app, zone)
    server, url = serve(stack)
    yield stack, url
    server.shutdown()
    server.server_close()


@pytest.fixture
def configuration(
    fake_stack: tuple[FakeStack, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """The driver finds the fake's token where it finds a real stack's: the state dir."""
    monkeypatch.delenv(auth.TOKEN_ENV, raising=False)
    stack_dir = tmp_path / "stack"
    stack_dir.mkdir()
    auth.token_file(stack_dir).write_text(fake_stack[0].token + "\n")
    return {
        "helius_control_url": fake_stack[1],
        "helius_stack_dir": str(stack_dir),
        "helius_run_dir": str(tmp_path / "run"),
        "helius_http_timeout_seconds": 2,
    }
