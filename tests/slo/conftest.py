from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import per_pod_history
import pytest
from support.prom_fixture import PromHistory

from chaoshelius.slo import verdict


@pytest.fixture(scope="module")
def pod_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromHistory]:
    proc, hist = per_pod_history.start(tmp_path_factory.mktemp("prom"))
    yield hist
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def pod_cfg(
    pod_history: PromHistory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """The recorded Prometheus, judged as of the end of its recording (an hour ago)."""
    monkeypatch.setattr(verdict, "now", lambda: pod_history.at(per_pod_history.NOW))
    return {
        "prometheus_base_url": pod_history.url,
        "helius_run_dir": str(tmp_path / "run"),
        "helius_http_timeout_seconds": 5,
    }
