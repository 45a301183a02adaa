"""Fixtures for the load tests: a fake recommender, a free metrics port, a run directory, and
a guarantee that no Locust started by a test outlives it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_reco import FakeReco
from load_helpers import LOCUSTFILE
from support.ports import free_port

from chaoshelius.load.actions import stop_load


@pytest.fixture
def fake_reco() -> Iterator[FakeReco]:
    fake = FakeReco().start()
    yield fake
    fake.stop()


@pytest.fixture
def load_config(tmp_path: Path) -> Iterator[dict[str, Any]]:
    config = {
        "helius_run_dir": str(tmp_path / "run"),
        "helius_loadgen_metrics_port": free_port(),
        "helius_locustfile": str(LOCUSTFILE),
        "helius_load_rate": 40,  # the suite's default (250/s) is more than a unit test needs
    }
    yield config
    stop_load(grace_seconds=5, configuration=config)  # never leave a Locust behind
