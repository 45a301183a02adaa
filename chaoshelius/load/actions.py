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
import time
from dataclasses import dataclass
from typing import Any

import httpx
from chaoslib.types import Configuration, Secrets

from chaoshelius import windows
from chaoshelius.drivers import LoadGenerator, get_driver
from chaoshelius.exceptions import ConfigurationError, TargetError
from chaoshelius.load import _runtime as rt
from chaoshelius.load.capacity import measure_capacity
from chaoshelius.load.plan import (
    DEFAULT_NEW_CONNECTION_SHARE,
    DEFAULT_REQUEST_TIMEOUT_SECONDS,
    LOCAL,
    SHAPES,
    LoadPlan,
)

__all__ = ["start_load", "stop_load"]

_STARTUP_TIMEOUT_SECONDS = 20.0
DEFAULT_RATE = 250.0  # requests/s when nothing says otherwise (issue 9: >= 10x the old ~23)
RATE_PER_USER = 2.5  # default users: one simulated client per 2.5 requests/s
RATE_PER_PROCESS = 300.0  # default processes: one Locust process per 300 requests/s
_METRIC_MARKER = "helius_client_requests_total"
# what start_load returns of the plan on a cluster (besides the driver's answer)
_CLUSTER_SUMMARY = (
    "target",
    "rate",
    "rate_source",
    "capacity_fraction",
    "capacity",
    "users",
    "spawn_rate",
    "processes",
)


def start_load(
    users: int | None = None,
    spawn_rate: float | None = None,
    duration_seconds: int = 300,
    host: str | None = None,
    shape: str = "steady",
    request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
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
    asked = LoadArguments(
        users=users,
        spawn_rate=spawn_rate,
        duration_seconds=duration_seconds,
        host=host,
        shape=shape,
        request_timeout_seconds=request_timeout_seconds,
        rate=rate,
        capacity_fraction=capacity_fraction,
        processes=processes,
        new_connection_share=new_connection_share,
    )
    asked.check()
    files = rt.run_files(config)
    windows.load_started()  # the client probes read this run's answers from here
    if config.target != LOCAL:
        return _start_in_cluster(config, files, asked)
    return _start_locally(config, files, asked)


@dataclass(frozen=True)
class LoadArguments:
    """start_load's arguments, before the plan fills in what they leave open."""

    users: int | None = None
    spawn_rate: float | None = None
    duration_seconds: int = 300
    host: str | None = None
    shape: str = "steady"
    request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS
    rate: float | None = None
    capacity_fraction: float | None = None
    processes: int | None = None
    new_connection_share: float = DEFAULT_NEW_CONNECTION_SHARE

    def check(self) -> None:
        """Refuse what no plan can run, with the activity's own words."""
        users, spawn_rate, rate, processes = self.users, self.spawn_rate, self.rate, self.processes
        if (
            (users is not None and users < 1)
            or (spawn_rate is not None and spawn_rate <= 0)
            or self.duration_seconds < 1
            or self.request_timeout_seconds <= 0
            or (rate is not None and rate <= 0)
            or (processes is not None and processes < 1)
            or not 0 <= self.new_connection_share <= 1
        ):
            raise TargetError(
                "start_load needs users >= 1, spawn_rate > 0, duration_seconds >= 1, "
                "request_timeout_seconds > 0, rate > 0, processes >= 1 and 0 <= "
                f"new_connection_share <= 1 (got users={users}, spawn_rate={spawn_rate}, "
                f"duration_seconds={self.duration_seconds}, request_timeout_seconds="
                f"{self.request_timeout_seconds}, rate={rate}, processes={processes}, "
                f"new_connection_share={self.new_connection_share})."
            )
        fraction = self.capacity_fraction
        if fraction is not None and not 0 < fraction <= 1:
            raise TargetError(f"start_load: capacity_fraction must be in (0, 1], not {fraction}.")
        if fraction is not None and rate is not None:
            raise TargetError("start_load: give either rate or capacity_fraction, not both.")
        if self.shape not in SHAPES:
            raise TargetError(f"start_load: shape must be 'steady' or 'ramp', not {self.shape!r}.")


def _start_locally(
    config: rt.LoadConfig, files: rt.RunFiles, asked: LoadArguments
) -> dict[str, Any]:
    """Locust as a child process (its own process group), ready once its exporter answers."""
    rt.forget_finished_children(files)
    port = config.helius_loadgen_metrics_port
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    _refuse_a_second_load(files, port, metrics_url)
    files.run_dir.mkdir(parents=True, exist_ok=True)
    for name in (*rt.CSV_FILES, "locust_exceptions.csv", rt.PID_FILE, rt.LOAD_FILE):
        (files.run_dir / name).unlink(missing_ok=True)
    plan = plan_load(config, files, asked)
    command = rt.locust_command(rt.locustfile(config), files, port, plan.locust_argv())
    process = rt.spawn_locust(command, files)
    rt._children[process.pid] = process
    files.pid.write_text(f"{process.pid}\n")
    plan.write(files.load_json, pid=process.pid, started_at=time.time(), command=command)
    _wait_ready(process, files, metrics_url)
    return {
        "pid": process.pid,
        "metrics_url": metrics_url,
        "run_dir": str(files.run_dir),
        "rate": plan.rate,
        "users": plan.users,
        "processes": plan.processes,
    }


def _refuse_a_second_load(files: rt.RunFiles, port: int, metrics_url: str) -> None:
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


def _wait_ready(process: subprocess.Popen[bytes], files: rt.RunFiles, metrics_url: str) -> None:
    """Wait for Locust's exporter; kill the group and fail if Locust exits or stays silent."""
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
            return
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
    config: rt.LoadConfig, files: rt.RunFiles, asked: LoadArguments
) -> dict[str, Any]:
    """The load on a cluster: the in-cluster Locust (master + `processes` workers, Locust's
    distributed mode) sized like the local one, scraped there as `app=loadgen`; `host`
    defaults to the in-cluster Service the manifests' settings name."""
    plan = plan_load(config, files, asked)
    started = _cluster_driver(config).start_load(plan)
    files.run_dir.mkdir(parents=True, exist_ok=True)
    plan.write(files.load_json, started_at=time.time(), expires_at=started.get("expires_at"))
    summary = {key: value for key, value in plan.to_json().items() if key in _CLUSTER_SUMMARY}
    return {**summary, **started, "run_dir": str(files.run_dir)}


def _rate(config: rt.LoadConfig, rate: float | None) -> tuple[float, str]:
    """The load's rate and where it came from: argument, configuration, environment, default."""
    if rate is not None:
        return rate, "argument"
    if config.helius_load_rate is not None:
        return config.helius_load_rate, "configuration helius_load_rate"
    if (from_env := _env_float(rt.RATE_ENV)) is not None:
        return from_env, f"environment {rt.RATE_ENV}"
    return DEFAULT_RATE, "default"


def plan_load(config: rt.LoadConfig, files: rt.RunFiles, asked: LoadArguments) -> LoadPlan:
    """The plan start_load runs: `asked`, with the rate, users, spawn rate and processes it
    leaves open decided (capacity_fraction: measured now, locally) and where each came from."""
    local = config.target == LOCAL
    host = (asked.host or config.helius_reco_url) if local else asked.host
    processes = asked.processes or config.helius_load_processes or _env_int(rt.PROCESSES_ENV)
    rate, source, capacity = _choose_rate(config, files, asked, host if local else None, processes)
    users = asked.users or max(1, math.ceil(rate / RATE_PER_USER))
    if processes is None:
        local_cpus = (os.cpu_count() or 1) if local else math.inf
        processes = max(1, int(min(local_cpus, math.ceil(rate / RATE_PER_PROCESS))))
    return LoadPlan(
        rate=rate,
        rate_source=source,
        users=users,
        spawn_rate=asked.spawn_rate if asked.spawn_rate is not None else max(10.0, users / 2),
        processes=processes,
        duration_seconds=asked.duration_seconds,
        host=host,
        shape=asked.shape,
        request_timeout_seconds=asked.request_timeout_seconds,
        new_connection_share=asked.new_connection_share,
        capacity_fraction=asked.capacity_fraction,
        capacity=capacity,
        target=config.target,
    )


def _choose_rate(
    config: rt.LoadConfig,
    files: rt.RunFiles,
    asked: LoadArguments,
    local_host: str | None,
    processes: int | None,
) -> tuple[float, str, dict[str, Any] | None]:
    """The rate, where it came from and the capacity measured for it. `local_host` None: the
    load runs in the cluster (its workers are not this machine's CPUs)."""
    fraction = asked.capacity_fraction
    if fraction is None:
        return (*_rate(config, asked.rate), None)
    if local_host is None:
        # measuring from the runner's machine says nothing of a cluster's capacity: the run's
        # configured rate (from a capacity test in the cluster) stands in for the fraction
        chosen, source = _rate(config, asked.rate)
        if source == "default":
            raise TargetError(
                "start_load: capacity_fraction measures the stack from this machine, which "
                f"says nothing of a {config.target} target; set helius_load_rate (or "
                f"{rt.RATE_ENV}) to the rate to run at, from a capacity test in the cluster."
            )
        return chosen, f"{source} (capacity_fraction {fraction:g} is local only)", None
    found = measure_capacity(
        local_host, files.run_dir / "capacity", rt.locustfile(config), processes=processes or 1
    )
    return round(found.capacity_rps * fraction, 1), "capacity", found.to_json()


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
    record = LoadPlan.read(files.load_json)
    if record is None or stats is None:
        return
    plan, facts = record
    steady = rt.steady_rate(files.history_csv, plan.users, skip_rows=1)
    facts["measured"] = {
        "total_requests": stats["total"]["requests"],
        "failure_ratio": stats["total"]["failure_ratio"],
        "rps_whole_run": stats["total"]["rps"],
        "steady": steady,
        # below ~0.9 the load generator (or the machine) could not keep the asked rate: more
        # processes (HELIUS_LOAD_PROCESSES), or a lower rate
        "steady_share_of_target": (
            round(steady["rps"] / plan.rate, 3) if steady and plan.rate else None
        ),
    }
    plan.write(files.load_json, **facts)
