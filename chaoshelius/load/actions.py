"""Start and stop the client load (Locust, headless, in the background).

In an experiment, start the load first in the method and stop it in the rollbacks (stop_load
is safe to run twice, and Locust's --run-time bounds the load even if nobody stops it):

    "method": [{"type": "action", "name": "start-load",
                "provider": {"type": "python", "module": "chaoshelius.load.actions",
                             "func": "start_load", "arguments": {"users": 20,
                             "duration_seconds": 300}}}, ...],
    "rollbacks": [{"type": "action", "name": "stop-load",
                   "provider": {"type": "python", "module": "chaoshelius.load.actions",
                                "func": "stop_load"}}]

What the clients saw is exported for Prometheus on `helius_loadgen_metrics_port`
(helius_client_requests_total{name,outcome,reason}, helius_client_request_latency_seconds,
helius_client_users) and written by Locust to `<helius_run_dir>/locust_*.csv`.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
from chaoslib.types import Configuration, Secrets

from chaoshelius import windows
from chaoshelius.exceptions import TargetError
from chaoshelius.load import _runtime as rt

__all__ = ["start_load", "stop_load"]

_STARTUP_TIMEOUT_SECONDS = 20.0
_METRIC_MARKER = "helius_client_requests_total"


def start_load(
    users: int = 20,
    spawn_rate: float = 10.0,
    duration_seconds: int = 300,
    host: str | None = None,
    shape: str = "steady",
    request_timeout_seconds: float = 5.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Start Locust headless in the background against the recommender.

    `users` simulated clients, spawned at `spawn_rate` per second, for at most
    `duration_seconds` (Locust stops by itself then, even if stop_load never runs). `host`
    defaults to the configuration's `helius_reco_url`. `shape` is "steady" (constant users) or
    "ramp" (steps up to `users` over the first minute). A request slower than
    `request_timeout_seconds` counts as a "timeout" failure.

    Returns {"pid", "metrics_url", "run_dir"} once the client-metrics endpoint answers.
    Fails if a load is already running (run stop_load first) or if Locust exits early.
    """
    config = rt.load_config(configuration)
    if users < 1 or spawn_rate <= 0 or duration_seconds < 1 or request_timeout_seconds <= 0:
        raise TargetError(
            "start_load needs users >= 1, spawn_rate > 0, duration_seconds >= 1 and "
            f"request_timeout_seconds > 0 (got {users}, {spawn_rate}, {duration_seconds}, "
            f"{request_timeout_seconds})."
        )
    if shape not in ("steady", "ramp"):
        raise TargetError(f"start_load: shape must be 'steady' or 'ramp', not {shape!r}.")
    files = rt.run_files(config)
    rt.forget_finished_children(files)
    port = config.helius_loadgen_metrics_port
    metrics_url = f"http://127.0.0.1:{port}/metrics"

    running = rt.read_pid(files)
    if running is not None and rt.is_locust(running):
        raise TargetError(
            f"a load is already running (Locust pid {running}, pidfile {files.pid}); "
            "run chaoshelius.load.actions.stop_load first."
        )
    if _port_answers(port):
        raise TargetError(
            f"something already listens on the load generator's metrics port {port} "
            f"({metrics_url}): a previous load (stop it with stop_load, or kill the Locust "
            "process it names) or another program; free the port or change "
            "'helius_loadgen_metrics_port'."
        )

    files.run_dir.mkdir(parents=True, exist_ok=True)
    for name in (*rt.CSV_FILES, "locust_exceptions.csv", rt.PID_FILE):
        (files.run_dir / name).unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(rt.locustfile(config)),
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        str(spawn_rate),
        "--run-time",
        f"{duration_seconds}s",
        "--host",
        host or config.helius_reco_url,
        "--csv",
        str(files.csv_prefix),
        "--csv-full-history",
        "--only-summary",
        "--metrics-port",
        str(port),
        "--shape",
        shape,
        "--request-timeout",
        str(request_timeout_seconds),
    ]
    with files.log.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop_load signals the whole group
        )
    rt._children[process.pid] = process
    files.pid.write_text(f"{process.pid}\n")

    deadline = time.monotonic() + _STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            rt._children.pop(process.pid, None)
            files.pid.unlink(missing_ok=True)
            raise TargetError(
                f"Locust exited early with code {process.returncode}; see {files.log}. "
                f"Last lines:\n{rt.log_tail(files)}"
            )
        if _is_our_exporter(metrics_url):
            return {"pid": process.pid, "metrics_url": metrics_url, "run_dir": str(files.run_dir)}
        time.sleep(0.2)
    rt.signal_group(process.pid, signal.SIGKILL)
    process.wait(5)
    rt._children.pop(process.pid, None)
    files.pid.unlink(missing_ok=True)
    raise TargetError(
        f"Locust started but its metrics endpoint {metrics_url} did not answer within "
        f"{_STARTUP_TIMEOUT_SECONDS:.0f} s, so it was killed; see {files.log}. "
        f"Last lines:\n{rt.log_tail(files)}"
    )


def stop_load(
    grace_seconds: float = 15.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Stop the load started by start_load; safe to run twice (rollbacks).

    Sends SIGTERM to Locust's process group (Locust then writes its final CSVs), and SIGKILL
    if it is still there after `grace_seconds`. Returns {"stopped": bool, "pid", "signal",
    "exit_code", "total_requests", "total_failures", "stats"}; "stopped" is false when no load
    was running (already stopped, or ended by its run time). "exit_code" is known only in the
    process that started the load; Locust exits 1 when the failure ratio exceeded 1 %.
    """
    windows.load_stopped()  # the client probes judge a fault's recovery up to here
    config = rt.load_config(configuration)
    files = rt.run_files(config)
    rt.forget_finished_children(files)
    pid = rt.read_pid(files)
    result: dict[str, Any] = {"stopped": False, "pid": pid, "signal": None}
    if pid is not None and rt.is_locust(pid):
        rt.signal_group(pid, signal.SIGTERM)
        result.update(stopped=True, signal="SIGTERM")
        if not rt.wait_gone(pid, grace_seconds):
            rt.signal_group(pid, signal.SIGKILL)
            result["signal"] = "SIGKILL"
            if not rt.wait_gone(pid, 5.0):
                raise TargetError(
                    f"Locust (pid {pid}) survived SIGKILL to its process group for 5 s; "
                    f"check it with `ps -o pid,stat,cmd -g {pid}`."
                )
    if pid is not None:
        result["exit_code"] = rt.exit_code(pid)
        rt._children.pop(pid, None)
    else:
        result["exit_code"] = None
    files.pid.unlink(missing_ok=True)
    stats = rt.read_stats(files)
    result["stats"] = stats
    result["total_requests"] = stats["total"]["requests"] if stats else None
    result["total_failures"] = stats["total"]["failures"] if stats else None
    return result


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _is_our_exporter(url: str) -> bool:
    try:
        response = httpx.get(url, timeout=1.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and _METRIC_MARKER in response.text
