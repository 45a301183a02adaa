"""The LoadPlan start_load hands the load generator: the same Locust options on the local target
(command line) and on a cluster (LOCUST_* settings), and load.json written and read in one place."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
from fake_reco import FakeReco
from load_helpers import LOCUSTFILE, scrape
from support.ports import free_port
from support.waiting import wait_for

from chaoshelius.load import _runtime as rt
from chaoshelius.load.plan import LoadPlan, locust_env_name


def _plan(**changes: object) -> LoadPlan:
    fields: dict[str, object] = {
        "rate": 500.0,
        "rate_source": "configuration helius_load_rate",
        "users": 200,
        "spawn_rate": 100.0,
        "processes": 2,
        "duration_seconds": 120,
        "host": None,
        "target": "kubernetes",
    }
    return LoadPlan(**{**fields, **changes})  # type: ignore[arg-type]


def test_the_cluster_settings_are_the_plan_as_locust_reads_it() -> None:
    assert _plan().locust_env() == {
        "LOCUST_USERS": "200",
        "LOCUST_SPAWN_RATE": "100",
        "LOCUST_SHAPE": "steady",
        "LOCUST_REQUEST_TIMEOUT": "5",
        "LOCUST_TARGET_RPS": "500",
        "LOCUST_NEW_CONNECTION_SHARE": "0.05",
        "LOCUST_EXPECT_WORKERS": "2",
    }
    assert _plan(host="http://reco").locust_env()["LOCUST_HOST"] == "http://reco"
    assert locust_env_name("--new-connection-share") == "LOCUST_NEW_CONNECTION_SHARE"


def test_the_local_command_line_is_the_same_plan() -> None:
    plan = _plan(host="http://127.0.0.1:1", target="local", rate=62.5, processes=1)
    argv = plan.locust_argv()
    options = dict(zip(argv[::2], argv[1::2], strict=True))
    assert options == {
        "--users": "200",
        "--spawn-rate": "100",
        "--host": "http://127.0.0.1:1",
        "--shape": "steady",
        "--request-timeout": "5",
        "--target-rps": "62.5",
        "--new-connection-share": "0.05",
        "--run-time": "120s",
    }
    # the same options as the cluster's settings, but the run time (locally) and the workers
    # the master waits for (on a cluster)
    assert {locust_env_name(flag) for flag in options} - {"LOCUST_RUN_TIME"} == set(
        plan.locust_env()
    ) - {"LOCUST_EXPECT_WORKERS"}
    assert plan.locust_argv()[-2:] != ["--processes", "1"]
    assert _plan(host="h", target="local").locust_argv()[-2:] == ["--processes", "2"]


def test_a_plan_refuses_what_no_load_can_run() -> None:
    for bad in ({"users": 0}, {"shape": "zigzag"}, {"new_connection_share": 2.0}):
        with pytest.raises(ValueError, match="a load plan needs"):
            _plan(**bad)
    with pytest.raises(ValueError, match="a host on the local target"):
        _plan(target="local")


def test_load_json_keeps_the_plan_and_the_facts(tmp_path: Path) -> None:
    path = tmp_path / "load.json"
    local = _plan(host="http://x", target="local")
    local.write(path, pid=42, command=["locust"])
    data = rt.read_json(path)
    assert data is not None and "target" not in data and data["pid"] == 42
    assert LoadPlan.read(path) == (local, {"pid": 42, "command": ["locust"]})
    cluster = _plan()
    cluster.write(path, expires_at=1.0)
    assert LoadPlan.read(path) == (cluster, {"expires_at": 1.0})
    assert LoadPlan.read(tmp_path / "missing.json") is None
    path.write_text('{"rate": 1}')
    with pytest.raises(ValueError, match="not a load plan"):
        LoadPlan.read(path)


def test_the_cluster_settings_drive_the_locustfile(fake_reco: FakeReco, tmp_path: Path) -> None:
    """What the in-cluster Locust gets (the plan's LOCUST_* settings, no option on its command
    line) runs the planned load: its users, its pacing, its churn."""
    plan = _plan(host=fake_reco.url, rate=40.0, users=4, spawn_rate=4.0, new_connection_share=0.0)
    port = free_port()
    files = rt.RunFiles(tmp_path)
    command = rt.locust_command(LOCUSTFILE, files, port, ["--run-time", "8s"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    with files.log.open("wb") as log:
        locust = subprocess.Popen(  # noqa: S603  argv list: this interpreter's locust
            command, env={**env, **plan.locust_env()}, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_for(lambda: _users(url) == 4, 20, "4 users")
        assert locust.wait(30) == 0, rt.log_tail(files)
    finally:
        if locust.poll() is None:
            locust.kill()
            locust.wait(5)
    steady = rt.steady_rate(files.history_csv, 4, skip_rows=1)
    assert steady is not None and 25 <= steady["rps"] <= 55, steady  # paced, not think time
    assert fake_reco.connections <= 4 + 1  # no churn: one keep-alive connection per user


def _users(url: str) -> float | None:
    try:
        return scrape(url).get(("helius_client_users",))
    except httpx.HTTPError:
        return None
