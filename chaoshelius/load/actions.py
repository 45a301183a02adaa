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

import math
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
from chaoslib.types import Configuration, Secrets

from chaoshelius import windows
from chaoshelius.drivers import LoadGenerator, get_driver
from chaoshelius.exceptions import ConfigurationError, TargetError
from chaoshelius.load import _runtime as rt
from chaoshelius.load.capacity import measure_capacity

__all__ = ["start_load", "stop_load"]

_STARTUP_TIMEOUT_SECONDS = 20.0
DEFAULT_RATE = 250.0  # requests/s when nothing says otherwise (issue 9: >= 10x the old ~23)
RATE_PER_USER = 2.5  # default users: one simulated client per 2.5 requests/s
RATE_PER_PROCESS = 300.0  # default processes: one Locust process per 300 requests/s
DEFAULT_NEW_CONNECTION_SHARE = 0.05
_METRIC_MARKER = "helius_client_requests_total"


def start_load(
    users: int | None = None,
    spawn_rate: float | None = None,
    duration_seconds: int = 300,
    host: str | None = None,
    shape: str = "steady",
    request_timeout_seconds: float = 5.0,
    rate: float | None = None,
    capacity_fraction: float | None = None,
    processes: int | None = None,
    new_connection_share: float = DEFAULT_NEW_CONNECTION_SHARE,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Start Locust headless in the background against the recommender.

    The load sends `rate` requests per second in total (default: the configuration key
    `helius_load_rate`, else the environment variable HELIUS_LOAD_RATE, else 250), shared by
    `users` simulated clients (default: one per 2.5 req/s) spawned at `spawn_rate` per second
    (default: all within 2 s). With `capacity_fraction` (0 < f <= 1) it first measures what the
    stack sustains (a ~25 s closed-loop step test, see chaoshelius.load.capacity) and runs at
    that fraction of it instead. `processes` Locust worker processes share the users (default:
    `helius_load_processes`, else HELIUS_LOAD_PROCESSES, else one per 300 req/s, at most the
    CPU count). After each request a user drops its connection with probability
    `new_connection_share` (connection churn, like clients coming and going).

    Locust stops by itself after `duration_seconds`, even if stop_load never runs. `host`
    defaults to the configuration's `helius_reco_url`. `shape` is "steady" (constant users) or
    "ramp" (steps up to `users` over the first minute). A request slower than
    `request_timeout_seconds` counts as a "timeout" failure. The settings are written to
    `<helius_run_dir>/load.json` (stop_load adds the rate really measured).

    With target=kubernetes the load runs in the cluster instead (the kubernetes driver sizes
    the in-cluster Locust master + `processes` workers; capacity mode is local only).

    Returns {"pid", "metrics_url", "run_dir", "rate", "users", "processes"} once the
    client-metrics endpoint answers. Fails if a load is already running (run stop_load first)
    or if Locust exits early.
    """
    config = rt.load_config(configuration)
    if (
        (users is not None and users < 1)
        or (spawn_rate is not None and spawn_rate <= 0)
        or duration_seconds < 1
        or request_timeout_seconds <= 0
        or (rate is not None and rate <= 0)
        or (processes is not None and processes < 1)
        or not 0 <= new_connection_share <= 1
    ):
        raise TargetError(
            "start_load needs users >= 1, spawn_rate > 0, duration_seconds >= 1, "
            "request_timeout_seconds > 0, rate > 0, processes >= 1 and 0 <= "
            f"new_connection_share <= 1 (got users={users}, spawn_rate={spawn_rate}, "
            f"duration_seconds={duration_seconds}, request_timeout_seconds="
            f"{request_timeout_seconds}, rate={rate}, processes={processes}, "
            f"new_connection_share={new_connection_share})."
        )
    if capacity_fraction is not None and not 0 < capacity_fraction <= 1:
        raise TargetError(
            f"start_load: capacity_fraction must be in (0, 1], not {capacity_fraction}."
        )
    if capacity_fraction is not None and rate is not None:
        raise TargetError("start_load: give either rate or capacity_fraction, not both.")
    if shape not in ("steady", "ramp"):
        raise TargetError(f"start_load: shape must be 'steady' or 'ramp', not {shape!r}.")
    files = rt.run_files(config)
    if config.target != "local":
        return _start_in_cluster(
            config,
            files,
            rate=rate,
            capacity_fraction=capacity_fraction,
            users=users,
            spawn_rate=spawn_rate,
            processes=processes,
            duration_seconds=duration_seconds,
            host=host,
            shape=shape,
            request_timeout_seconds=request_timeout_seconds,
            new_connection_share=new_connection_share,
        )
    rt.forget_finished_children(files)
    port = config.helius_loadgen_metrics_port
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    target = host or config.helius_reco_url

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
    for name in (*rt.CSV_FILES, "locust_exceptions.csv", rt.PID_FILE, rt.LOAD_FILE):
        (files.run_dir / name).unlink(missing_ok=True)
    plan = _plan(config, target, files, rate, capacity_fraction, users, spawn_rate, processes)
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(rt.locustfile(config)),
        "--headless",
        "--users",
        str(plan["users"]),
        "--spawn-rate",
        str(plan["spawn_rate"]),
        "--run-time",
        f"{duration_seconds}s",
        "--host",
        target,
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
        "--target-rps",
        str(plan["rate"]),
        "--new-connection-share",
        str(new_connection_share),
    ]
    if plan["processes"] > 1:
        command += ["--processes", str(plan["processes"])]
    with files.log.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603  argv list, no shell: locust, our options
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop_load signals the whole group
        )
    rt._children[process.pid] = process
    files.pid.write_text(f"{process.pid}\n")
    rt.write_json(
        files.load_json,
        {
            **plan,
            "host": target,
            "shape": shape,
            "duration_seconds": duration_seconds,
            "request_timeout_seconds": request_timeout_seconds,
            "new_connection_share": new_connection_share,
            "pid": process.pid,
            "started_at": time.time(),
            "command": command,
        },
    )

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
            return {
                "pid": process.pid,
                "metrics_url": metrics_url,
                "run_dir": str(files.run_dir),
                "rate": plan["rate"],
                "users": plan["users"],
                "processes": plan["processes"],
            }
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


def _cluster_driver(config: rt.LoadConfig) -> LoadGenerator:
    driver = get_driver(config)
    if not isinstance(driver, LoadGenerator):
        raise TargetError(
            f"target {config.target!r} has no load generator of its own; use target=local "
            "or a driver that runs the load (kubernetes: "
            "manifests/components/chaos-harness/loadgen.yaml)"
        )
    return driver


def _start_in_cluster(
    config: rt.LoadConfig,
    files: rt.RunFiles,
    *,
    rate: float | None,
    capacity_fraction: float | None,
    users: int | None,
    spawn_rate: float | None,
    processes: int | None,
    duration_seconds: int,
    host: str | None,
    shape: str,
    request_timeout_seconds: float,
    new_connection_share: float,
) -> dict[str, Any]:
    """The load on a cluster: the in-cluster Locust (master + `processes` workers, Locust's
    distributed mode) sized like the local one, scraped there as `app=loadgen`; `host`
    defaults to the in-cluster Service the manifests' settings name."""
    plan = {
        "target": config.target,
        **_plan(config, None, files, rate, capacity_fraction, users, spawn_rate, processes),
    }
    users, workers = int(plan["users"]), int(plan["processes"])
    started = _cluster_driver(config).start_load(
        users=users,
        spawn_rate=float(plan["spawn_rate"]),
        duration_seconds=duration_seconds,
        workers=workers,
        host=host,
        shape=shape,
        request_timeout_seconds=request_timeout_seconds,
        rate=float(plan["rate"]),
        new_connection_share=new_connection_share,
    )
    files.run_dir.mkdir(parents=True, exist_ok=True)
    rt.write_json(
        files.load_json,
        {
            **plan,
            "host": host,
            "shape": shape,
            "duration_seconds": duration_seconds,
            "request_timeout_seconds": request_timeout_seconds,
            "new_connection_share": new_connection_share,
            "started_at": time.time(),
            "expires_at": started.get("expires_at"),
        },
    )
    return {**plan, **started, "run_dir": str(files.run_dir)}


def _rate(config: rt.LoadConfig, rate: float | None) -> tuple[float, str]:
    """The load's rate and where it came from: argument, configuration, environment, default."""
    if rate is not None:
        return rate, "argument"
    if config.helius_load_rate is not None:
        return config.helius_load_rate, "configuration helius_load_rate"
    if (from_env := _env_float(rt.RATE_ENV)) is not None:
        return from_env, f"environment {rt.RATE_ENV}"
    return DEFAULT_RATE, "default"


def _plan(
    config: rt.LoadConfig,
    host: str | None,
    files: rt.RunFiles,
    rate: float | None,
    capacity_fraction: float | None,
    users: int | None,
    spawn_rate: float | None,
    processes: int | None,
) -> dict[str, Any]:
    """The rate, users, spawn rate and processes the load runs with, and where each came from.
    `host` None: the load runs in the cluster (its workers are not this machine's CPUs)."""
    if processes is None:
        processes = config.helius_load_processes or _env_int(rt.PROCESSES_ENV)
    measured: dict[str, Any] | None = None
    if capacity_fraction is not None and host is None:
        # measuring from the runner's machine says nothing of a cluster's capacity: the run's
        # configured rate (from a capacity test in the cluster) stands in for the fraction
        chosen, source = _rate(config, rate)
        if source == "default":
            raise TargetError(
                "start_load: capacity_fraction measures the stack from this machine, which "
                f"says nothing of a {config.target} target; set helius_load_rate (or "
                f"{rt.RATE_ENV}) to the rate to run at, from a capacity test in the cluster."
            )
        source += f" (capacity_fraction {capacity_fraction:g} is local only)"
    elif capacity_fraction is not None and host is not None:
        found = measure_capacity(
            host,
            files.run_dir / "capacity",
            rt.locustfile(config),
            processes=processes or 1,
        )
        measured = found.to_json()
        chosen, source = round(found.capacity_rps * capacity_fraction, 1), "capacity"
    else:
        chosen, source = _rate(config, rate)
    if users is None:
        users = max(1, math.ceil(chosen / RATE_PER_USER))
    if processes is None:
        local_cpus = (os.cpu_count() or 1) if host is not None else math.inf
        processes = max(1, int(min(local_cpus, math.ceil(chosen / RATE_PER_PROCESS))))
    return {
        "rate": chosen,
        "rate_source": source,
        "capacity_fraction": capacity_fraction,
        "capacity": measured,
        "users": users,
        "spawn_rate": spawn_rate if spawn_rate is not None else max(10.0, users / 2),
        "processes": processes,
    }


def _env_float(name: str) -> float | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError as exc:
        raise ConfigurationError(f"{name}={value!r} is not a number of requests/s.") from exc
    if number <= 0:
        raise ConfigurationError(f"{name}={value!r} must be > 0.")
    return number


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConfigurationError(f"{name}={value!r} must be a whole number >= 1.")
    return int(value)


def stop_load(
    grace_seconds: float = 15.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Stop the load started by start_load; safe to run twice (rollbacks).

    Sends SIGTERM to Locust (which stops its workers, if any, and writes its final CSVs), and
    SIGKILL to its whole process group if it is still there after `grace_seconds`. Returns
    {"stopped": bool, "pid", "signal", "exit_code", "total_requests", "total_failures",
    "stats"}; "stopped" is false when no load was running (already stopped, or ended by its
    run time). "exit_code" is known only in the
    process that started the load; Locust exits 1 when the failure ratio exceeded 1 %.
    """
    windows.load_stopped()  # the client probes judge a fault's recovery up to here
    config = rt.load_config(configuration)
    files = rt.run_files(config)
    if config.target != "local":
        return {**_cluster_driver(config).stop_load(), "target": config.target}
    rt.forget_finished_children(files)
    pid = rt.read_pid(files)
    result: dict[str, Any] = {"stopped": False, "pid": pid, "signal": None}
    if pid is not None and rt.is_locust(pid):
        # Locust itself (the master under --processes) first: it stops its workers and waits
        # for their last reports, which a SIGTERM to the whole group would lose.
        rt.signal_process(pid, signal.SIGTERM)
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
    _record_measured(files, stats)
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


def _record_measured(files: rt.RunFiles, stats: dict[str, Any] | None) -> None:
    """Add to load.json the rate the load really had (whole run, and once all users ran)."""
    plan = rt.read_json(files.load_json)
    if plan is None or stats is None:
        return
    steady = rt.steady_rate(files.history_csv, int(plan["users"]), skip_rows=1)
    plan["measured"] = {
        "total_requests": stats["total"]["requests"],
        "failure_ratio": stats["total"]["failure_ratio"],
        "rps_whole_run": stats["total"]["rps"],
        "steady": steady,
        # below ~0.9 the load generator (or the machine) could not keep the asked rate: more
        # processes (HELIUS_LOAD_PROCESSES), or a lower rate
        "steady_share_of_target": (
            round(steady["rps"] / float(plan["rate"]), 3) if steady and plan.get("rate") else None
        ),
    }
    rt.write_json(files.load_json, plan)
