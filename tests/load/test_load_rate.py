"""The load's rate, churn, processes and conventions, with real Locust against the fake service:
the target rate is kept and recorded in load.json, connections churn at the asked share, the
exporter's totals under --processes equal Locust's own and the server's, options come from
LOCUST_* variables and show in the web UI, tags select tasks, the host has a default, and the
capacity step test finds a rate that start_load can run at a fraction of."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_reco import FakeReco
from load_helpers import LOCUSTFILE, scrape
from support.ports import free_port
from support.waiting import wait_for

from chaoshelius.exceptions import ConfigurationError, TargetError
from chaoshelius.load import _runtime as rt
from chaoshelius.load import actions
from chaoshelius.load.actions import start_load, stop_load
from chaoshelius.load.capacity import measure_capacity


def _total(samples: dict[tuple[str, ...], float]) -> float:
    return sum(v for k, v in samples.items() if k[0] == "helius_client_requests_total")


def _load_json(config: dict[str, Any]) -> dict[str, Any]:
    data = rt.read_json(Path(config["helius_run_dir"]) / "load.json")
    assert data is not None
    return data


def test_the_target_rate_is_kept_and_recorded(
    fake_reco: FakeReco, load_config: dict[str, Any]
) -> None:
    started = start_load(
        rate=60, users=6, duration_seconds=60, host=fake_reco.url, configuration=load_config
    )
    assert (started["rate"], started["users"], started["processes"]) == (60, 6, 1)
    plan = _load_json(load_config)
    assert plan["rate"] == 60 and plan["rate_source"] == "argument"
    assert plan["users"] == 6 and plan["processes"] == 1 and plan["new_connection_share"] == 0.05
    assert "--target-rps" in plan["command"]
    time.sleep(9)
    stop_load(configuration=load_config)
    measured = _load_json(load_config)["measured"]
    steady = measured["steady"]
    assert steady is not None and steady["seconds"] >= 5
    assert 50 <= steady["rps"] <= 70, steady  # paced: neither the think-time ~10/s nor flat out
    assert measured["steady_share_of_target"] == round(steady["rps"] / 60, 3)
    assert measured["failure_ratio"] == 0


@pytest.mark.parametrize("share", [0.0, 0.25])
def test_connections_churn_at_the_asked_share(
    fake_reco: FakeReco, load_config: dict[str, Any], share: float
) -> None:
    start_load(
        rate=80,
        users=4,
        new_connection_share=share,
        duration_seconds=60,
        host=fake_reco.url,
        configuration=load_config,
    )
    wait_for(lambda: sum(fake_reco.paths.values()) >= 400, 30, "400 requests")
    stop_load(configuration=load_config)
    requests, connections = sum(fake_reco.paths.values()), fake_reco.connections
    if share == 0:
        assert connections <= 4 + 1  # one keep-alive connection per user (+ the readiness probe)
    else:
        assert 0.15 * requests <= connections <= 0.35 * requests, (connections, requests)


def test_rate_precedence_argument_configuration_environment_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = rt.RunFiles(tmp_path)
    monkeypatch.delenv(rt.RATE_ENV, raising=False)
    monkeypatch.delenv(rt.PROCESSES_ENV, raising=False)

    def plan(rate: float | None = None, **config: Any) -> dict[str, Any]:
        cfg = rt.load_config(config)
        return actions.plan_load(cfg, files, actions.LoadArguments(rate=rate)).to_json()

    default = plan()
    assert (default["rate"], default["rate_source"]) == (250.0, "default")
    assert default["users"] == 100 and default["spawn_rate"] == 50
    assert default["processes"] == 1  # 250/s fits one Locust process
    monkeypatch.setenv(rt.RATE_ENV, "400")
    from_env = plan()
    assert (from_env["rate"], from_env["rate_source"]) == (400.0, "environment HELIUS_LOAD_RATE")
    assert from_env["processes"] == min(os.cpu_count() or 1, 2)
    assert plan(helius_load_rate=300)["rate_source"] == "configuration helius_load_rate"
    assert plan(rate=50, helius_load_rate=300)["rate"] == 50
    monkeypatch.setenv(rt.PROCESSES_ENV, "3")
    assert plan()["processes"] == 3
    assert plan(helius_load_processes=1)["processes"] == 1
    monkeypatch.setenv(rt.RATE_ENV, "fast")
    with pytest.raises(ConfigurationError, match="HELIUS_LOAD_RATE='fast'"):
        plan()


def test_bad_rate_arguments_are_refused(load_config: dict[str, Any]) -> None:
    with pytest.raises(TargetError, match="rate > 0"):
        start_load(rate=0, configuration=load_config)
    with pytest.raises(TargetError, match="capacity_fraction"):
        start_load(capacity_fraction=1.5, configuration=load_config)
    with pytest.raises(TargetError, match="either rate or capacity_fraction"):
        start_load(rate=10, capacity_fraction=0.5, configuration=load_config)
    assert not (Path(load_config["helius_run_dir"]) / "locust.pid").exists()


def _locust(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def test_processes_web_ui_env_vars_and_default_host(fake_reco: FakeReco, tmp_path: Path) -> None:
    """Two worker processes, every Helius option from a LOCUST_* variable, no --host: the web
    UI lists the traffic options, and once the run stops, the exporter's totals (sums over the
    workers, served by the master) equal Locust's own totals and the requests the server got."""
    metrics, web = free_port(), free_port()
    process = _locust(
        [
            "--processes",
            "2",
            "--autostart",
            "--run-time",
            "6s",
            "-u",
            "6",
            "-r",
            "20",
            "--web-host",
            "127.0.0.1",
            "--web-port",
            str(web),
        ],
        {
            "HELIUS_RECO_URL": fake_reco.url,  # the default host
            "LOCUST_METRICS_PORT": str(metrics),
            "LOCUST_TARGET_RPS": "60",
            "LOCUST_NEW_CONNECTION_SHARE": "0.1",
        },
        tmp_path / "locust.log",
    )
    try:
        url = f"http://127.0.0.1:{metrics}/metrics"
        wait_for(lambda: _answers(url), 30, "the master's exporter")
        page = httpx.get(f"http://127.0.0.1:{web}/", timeout=5).text
        for shown in ("target_rps", "new_connection_share", "request_timeout"):
            assert shown in page, shown
        assert "metrics_port" not in page  # acts at start only: not offered in the UI

        def stopped() -> bool:
            stats = httpx.get(f"http://127.0.0.1:{web}/stats/requests", timeout=5).json()
            return bool(stats["state"] == "stopped")

        wait_for(stopped, 40, "the run time to end")
        seen: dict[str, float] = {}

        def totals_agree() -> bool:
            stats = httpx.get(f"http://127.0.0.1:{web}/stats/requests", timeout=5).json()
            aggregated = next(s for s in stats["stats"] if s["name"] == "Aggregated")
            seen.update(exporter=_total(scrape(url)), locust=aggregated["num_requests"])
            return seen["exporter"] == seen["locust"]

        # the workers report every 1 s (ours) and 3 s (Locust's): both settle on the same total
        try:
            wait_for(totals_agree, 15, "exporter == Locust's total")
        except pytest.fail.Exception:
            pytest.fail(f"the exporter and Locust disagree: {seen}")
        assert seen["exporter"] >= 150  # ~60/s for 6 s, through both workers
        # the server got those, plus at most one request per user cut off by the stop (a user
        # killed while its request was in flight records nothing, in Locust or here)
        assert 0 <= sum(fake_reco.paths.values()) - seen["exporter"] <= 6
        samples = scrape(url)
        assert (
            samples[("helius_client_request_latency_seconds_count", "name=/predict")]
            + samples[("helius_client_request_latency_seconds_count", "name=/health")]
            == seen["exporter"]
        )
        assert "2 workers connected" in (tmp_path / "locust.log").read_text()
    finally:
        _kill(process)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_tags_select_the_tasks(fake_reco: FakeReco, tmp_path: Path) -> None:
    process = _locust(
        ["--headless", "-u", "2", "-r", "10", "--run-time", "60s", "--tags", "health"],
        {"LOCUST_HOST": fake_reco.url, "LOCUST_METRICS_PORT": "0", "LOCUST_TARGET_RPS": "20"},
        tmp_path / "locust.log",
    )
    try:
        wait_for(lambda: sum(fake_reco.paths.values()) >= 20, 30, "20 requests")
    finally:
        _kill(process)
    assert fake_reco.paths["/health"] >= 20
    assert fake_reco.paths["/predict"] == 0


def test_capacity_then_a_fraction_of_it(fake_reco: FakeReco, load_config: dict[str, Any]) -> None:
    work = Path(load_config["helius_run_dir"]) / "cap"
    found = measure_capacity(fake_reco.url, work, LOCUSTFILE, steps=(1, 4), step_seconds=4)
    assert [step.users for step in found.steps] == [1, 4]
    assert found.capacity_rps > 30  # closed loop: far above the paced rates above
    assert found.capacity_rps == max(step.rps for step in found.steps)
    assert found.locust_cpu_ms_per_request is not None and found.locust_cpu_ms_per_request > 0
    assert json.loads((work / "capacity.json").read_text())["capacity_rps"] == found.capacity_rps

    started = start_load(
        capacity_fraction=0.25, duration_seconds=30, host=fake_reco.url, configuration=load_config
    )
    plan = _load_json(load_config)
    assert plan["rate_source"] == "capacity" and plan["capacity_fraction"] == 0.25
    assert plan["rate"] == started["rate"] == round(plan["capacity"]["capacity_rps"] * 0.25, 1)
    stop_load(configuration=load_config)


def test_capacity_of_a_dead_service_is_an_error(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TargetError, match="no step"):
        measure_capacity(dead, tmp_path, LOCUSTFILE, steps=(2,), step_seconds=3)


def test_capacity_command(fake_reco: FakeReco, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from chaoshelius.cli import main

    result = CliRunner().invoke(
        main,
        [
            "load",
            "capacity",
            "--host",
            fake_reco.url,
            "--steps",
            "2",
            "--step-seconds",
            "3",
            "--fraction",
            "0.5",
            "--work-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    found = json.loads((tmp_path / "capacity.json").read_text())
    assert f"capacity {found['capacity_rps']:.1f} req/s at 2 users" in result.output
    assert f"0.5 of it: {found['capacity_rps'] * 0.5:.1f} req/s" in result.output
    assert "CPU-ms per request" in result.output
