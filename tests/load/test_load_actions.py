"""start_load / stop_load / probes for real: a real Locust process against a fake recommender,
its real exporter scraped over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fake_reco import FakeReco
from load_helpers import LOCUSTFILE, REPO, requests_count, scrape
from support.ports import free_port
from support.waiting import wait_for

from chaoshelius.exceptions import TargetError
from chaoshelius.load import _runtime as rt
from chaoshelius.load.actions import start_load, stop_load
from chaoshelius.load.probes import load_is_running, load_stats

PREDICT = "/predict"


def test_lifecycle_against_a_healthy_service(
    fake_reco: FakeReco, load_config: dict[str, Any]
) -> None:
    started = start_load(
        users=4, spawn_rate=20, duration_seconds=60, host=fake_reco.url, configuration=load_config
    )
    run_dir = Path(load_config["helius_run_dir"]).resolve()
    assert started["run_dir"] == str(run_dir)
    assert started["metrics_url"].endswith(f":{load_config['helius_loadgen_metrics_port']}/metrics")
    assert (run_dir / "locust.pid").read_text().strip() == str(started["pid"])
    assert load_is_running(configuration=load_config)

    with pytest.raises(TargetError, match="already running"):
        start_load(host=fake_reco.url, configuration=load_config)

    url = started["metrics_url"]
    wait_for(
        lambda: requests_count(scrape(url), PREDICT, "ok") >= 40, 15.0, "40 good /predict answers"
    )
    samples = scrape(url)
    assert samples[("helius_client_users",)] == 4
    for reason in ("http_5xx", "http_4xx", "connection", "timeout", "bad_content", "other"):
        assert requests_count(samples, PREDICT, reason) == 0, reason
    assert samples[("helius_client_request_latency_seconds_count", f"name={PREDICT}")] >= 40
    assert samples[("helius_client_request_latency_seconds_bucket", "le=1.0", f"name={PREDICT}")]

    # the traffic the service saw: skewed users, varying k, some exclusions ("next page")
    assert sum(fake_reco.users.values()) >= 40
    assert fake_reco.with_exclusions > 0
    assert len(fake_reco.ks) >= 2

    stopped = stop_load(configuration=load_config)
    assert stopped["stopped"] is True
    assert stopped["signal"] == "SIGTERM"
    assert stopped["exit_code"] == 0
    assert stopped["total_requests"] >= 40
    assert stopped["total_failures"] == 0
    assert stopped["stats"]["by_name"]["POST /predict"]["requests"] >= 40
    for name in rt.CSV_FILES:
        assert (run_dir / name).stat().st_size > 0, name
    assert not (run_dir / "locust.pid").exists()
    assert not load_is_running(configuration=load_config)

    again = stop_load(configuration=load_config)
    assert again["stopped"] is False
    assert again["total_requests"] == stopped["total_requests"]  # stats still readable
    assert load_stats(configuration=load_config)["total"]["requests"] >= 40


def test_failures_are_counted_by_reason(fake_reco: FakeReco, load_config: dict[str, Any]) -> None:
    started = start_load(
        users=4,
        spawn_rate=20,
        duration_seconds=60,
        host=fake_reco.url,
        request_timeout_seconds=0.5,
        configuration=load_config,
    )
    url = started["metrics_url"]

    def phase(mode: str, reason: str) -> None:
        fake_reco.mode = mode
        before = requests_count(scrape(url), PREDICT, reason)
        wait_for(
            lambda: requests_count(scrape(url), PREDICT, reason) >= before + 3,
            15.0,
            f"{reason} failures in mode {mode}",
        )

    wait_for(lambda: requests_count(scrape(url), PREDICT, "ok") >= 5, 15.0, "good answers")
    phase("bad_content", "bad_content")
    phase("fail", "http_5xx")
    phase("excluded", "bad_content")
    phase("slow", "timeout")
    fake_reco.stop()  # the service disappears: refused connections
    wait_for(
        lambda: requests_count(scrape(url), PREDICT, "connection") >= 3, 15.0, "connection failures"
    )
    samples = scrape(url)
    assert requests_count(samples, PREDICT, "other") == 0
    # timeouts took ~0.5 s, not the 1.5 s the server would have needed
    slow_bucket = ("helius_client_request_latency_seconds_bucket", "le=1.0", f"name={PREDICT}")
    count = ("helius_client_request_latency_seconds_count", f"name={PREDICT}")
    assert samples[slow_bucket] == samples[count]

    stopped = stop_load(configuration=load_config)
    assert stopped["stopped"] is True
    assert stopped["exit_code"] == 1, "failure ratio above --fail-ratio must exit 1"
    errors = {f["error"] for f in stopped["stats"]["failures"]}
    assert "bad content: scores not sorted descending" in errors
    assert "bad content: excluded item returned" in errors
    assert "HTTP 500" in errors
    assert "timeout" in errors
    assert "connection error" in errors


def test_sigkilled_parent_leaves_locust_bounded_by_run_time(
    fake_reco: FakeReco, load_config: dict[str, Any]
) -> None:
    parent = (
        "import json, os, signal, sys\n"
        "from chaoshelius.load.actions import start_load\n"
        "config = json.loads(sys.argv[1])\n"
        "start_load(users=2, spawn_rate=10, duration_seconds=3, host=sys.argv[2],"
        " configuration=config)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", parent, json.dumps(load_config), fake_reco.url],
        timeout=60,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL
    files = rt.run_files(rt.load_config(load_config))
    pid = rt.read_pid(files)
    assert pid is not None and rt.is_locust(pid), "Locust should outlive its killed parent"
    wait_for(lambda: not rt.is_locust(pid), 20, "Locust to end by its --run-time")
    assert load_stats(configuration=load_config)["total"]["requests"] > 0
    assert stop_load(configuration=load_config)["stopped"] is False


def test_stop_load_from_a_fresh_process(fake_reco: FakeReco, load_config: dict[str, Any]) -> None:
    started = start_load(
        users=2, spawn_rate=10, duration_seconds=60, host=fake_reco.url, configuration=load_config
    )
    stopper = (
        "import json, sys\n"
        "from chaoshelius.load.actions import stop_load\n"
        "print(json.dumps(stop_load(configuration=json.loads(sys.argv[1]))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", stopper, json.dumps(load_config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(done.stdout)
    assert result["stopped"] is True
    assert result["pid"] == started["pid"]
    assert result["exit_code"] is None  # not its child: unknown there
    assert not load_is_running(configuration=load_config)
    assert stop_load(configuration=load_config)["stopped"] is False


def test_locust_exiting_early_is_reported_with_its_log(
    tmp_path: Path, load_config: dict[str, Any]
) -> None:
    broken = tmp_path / "broken_locustfile.py"
    broken.write_text("raise RuntimeError('this locustfile is broken on purpose')\n")
    load_config["helius_locustfile"] = str(broken)
    with pytest.raises(TargetError, match="exited early") as info:
        start_load(host="http://127.0.0.1:9", configuration=load_config)
    assert "broken on purpose" in str(info.value)
    assert not load_is_running(configuration=load_config)


def test_busy_metrics_port_is_refused(load_config: dict[str, Any]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        load_config["helius_loadgen_metrics_port"] = busy.getsockname()[1]
        with pytest.raises(TargetError, match="already listens on the load generator's metrics"):
            start_load(host="http://127.0.0.1:9", configuration=load_config)
    assert not (Path(load_config["helius_run_dir"]) / "locust.pid").exists()


def test_probes_without_a_load(load_config: dict[str, Any]) -> None:
    assert load_is_running(configuration=load_config) is False
    with pytest.raises(TargetError, match="no Locust statistics"):
        load_stats(configuration=load_config)
    assert stop_load(configuration=load_config) == {
        "stopped": False,
        "pid": None,
        "signal": None,
        "exit_code": None,
        "stats": None,
        "total_requests": None,
        "total_failures": None,
    }


def test_stale_pidfile_of_an_unrelated_process_is_not_signalled(
    load_config: dict[str, Any],
) -> None:
    run_dir = Path(load_config["helius_run_dir"])
    run_dir.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (run_dir / "locust.pid").write_text(f"{sleeper.pid}\n")
        assert load_is_running(configuration=load_config) is False
        assert stop_load(configuration=load_config)["stopped"] is False
        assert sleeper.poll() is None, "stop_load must not signal a process that is not Locust"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_ramp_shape_steps_up_to_the_target(fake_reco: FakeReco, tmp_path: Path) -> None:
    prefix = tmp_path / "ramp"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "-u",
            "8",
            "-r",
            "50",
            "--run-time",
            "4s",
            "--shape",
            "ramp",
            "--ramp-seconds",
            "2",
            "--host",
            fake_reco.url,
            "--metrics-port",
            str(free_port()),
            "--csv",
            str(prefix),
            "--only-summary",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = (tmp_path / "ramp_stats_history.csv").read_text().splitlines()
    header = lines[0].split(",")
    column = header.index("User Count")
    counts = [int(line.split(",")[column]) for line in lines[1:]]
    assert counts and max(counts) == 8
    assert min(c for c in counts if c > 0) < 8, f"no ramp seen: {counts}"
