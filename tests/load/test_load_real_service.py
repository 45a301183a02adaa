"""The load against the real recommender (helius_reco under uvicorn, no MLflow: it serves its
baseline model): every answer passes the content checks, and when the service dies the clients
report what the dead process cannot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from load_helpers import requests_count, scrape
from support.ports import free_port
from support.waiting import wait_for

from chaoshelius.load.actions import start_load, stop_load

pytest.importorskip("helius_reco.main")


@dataclass
class RealReco:
    url: str
    process: subprocess.Popen[bytes]


@pytest.fixture
def real_reco(tmp_path: Path) -> Iterator[RealReco]:
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("HELIUS_") and not key.startswith("MLFLOW_")
    }
    env |= {"HELIUS_CACHE_DIR": str(tmp_path / "cache"), "HELIUS_LOG_LEVEL": "WARNING"}
    log = (tmp_path / "reco.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "helius_reco.main:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert server.poll() is None, (tmp_path / "reco.log").read_text()
        try:
            return httpx.get(f"{url}/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, 30, "the recommender to be ready")
        yield RealReco(url, server)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)
        log.close()


def test_load_against_the_real_service(real_reco: RealReco, load_config: dict[str, Any]) -> None:
    started = start_load(
        users=4, spawn_rate=20, duration_seconds=60, host=real_reco.url, configuration=load_config
    )
    url = started["metrics_url"]
    wait_for(
        lambda: (
            requests_count(samples := scrape(url), "/predict", "ok") >= 30
            and requests_count(samples, "/health", "ok") >= 1
        ),
        30,
        "30 good /predict and 1 good /health",
    )
    samples = scrape(url)
    failures = {
        (name, reason): requests_count(samples, name, reason)
        for name in ("/predict", "/health")
        for reason in ("http_5xx", "http_4xx", "connection", "timeout", "bad_content", "other")
    }
    assert not any(failures.values()), failures  # incl. 4xx: the request body fits the schema

    server_metrics = httpx.get(f"{real_reco.url}/metrics", timeout=2).text
    served = sum(
        float(line.rsplit(" ", 1)[1])
        for line in server_metrics.splitlines()
        if line.startswith("reco_engine_requests_total{")
    )
    assert served >= 30

    # the service dies: it can no longer report anything, the clients do
    os.killpg(real_reco.process.pid, signal.SIGKILL)
    wait_for(
        lambda: requests_count(scrape(url), "/predict", "connection") >= 3,
        15.0,
        "clients to see connection failures",
    )
    stopped = stop_load(configuration=load_config)
    assert stopped["stopped"] is True
    assert stopped["total_failures"] >= 3
