"""Capacity mode: measure, now, the request rate the stack (and this machine) sustains.

A short closed-loop step test: Locust with no wait between tasks, at each user count of
`steps` for `step_seconds`, against the recommender (through the same proxy the load uses).
Its exporter (on a free port, not the experiments' one) is read every 0.25 s; the sustained
rate of a step is the requests counted between the first and the last reading of that step
(after its first second, while its users spawn), over the time between them. The capacity is
the best step whose failure ratio stayed under `max_failure_ratio`. `start_load`
(capacity_fraction=...) and `chaoshelius load capacity` use it.

The figure is the capacity of the whole machine, load generator included: on a small machine
Locust's own CPU is part of the limit, so the result also says how much CPU Locust used per
request (`locust_cpu_ms_per_request`) and the rate one fully busy core of Locust would give.
Other work on the machine moves the figure: measure at run time, never hard-code it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from chaoshelius.exceptions import TargetError
from chaoshelius.load import _runtime as rt
from chaoshelius.stack.procs import kill_group

DEFAULT_STEPS = (8, 16, 32, 64)
DEFAULT_STEP_SECONDS = 6.0
CAPACITY_FILE = "capacity.json"
_SETTLE_SECONDS = 1.0  # skipped at the start of each step (its users still spawning)
_SAMPLE_SECONDS = 0.25


@dataclass(frozen=True)
class Step:
    users: int
    seconds: float
    requests: float
    rps: float
    failure_ratio: float


@dataclass(frozen=True)
class Capacity:
    host: str
    processes: int
    step_seconds: float
    steps: list[Step]
    capacity_rps: float
    best_users: int
    saturated: bool  # False: the last step was still gaining (>10 %): capacity is a floor
    locust_cpu_seconds: float
    locust_cpu_ms_per_request: float | None
    measured_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def measure_capacity(
    host: str,
    work_dir: Path,
    locustfile: Path,
    steps: tuple[int, ...] = DEFAULT_STEPS,
    step_seconds: float = DEFAULT_STEP_SECONDS,
    processes: int = 1,
    request_timeout_seconds: float = 5.0,
    max_failure_ratio: float = 0.01,
) -> Capacity:
    """Run the step test in `work_dir` (Locust's CSVs and log land there, and capacity.json)
    and return what it found. Raises TargetError when no step stayed under the failure ratio
    or Locust failed."""
    if not steps or min(steps) < 1 or step_seconds < 2 or processes < 1:
        raise TargetError(
            "measure_capacity needs user counts >= 1, step_seconds >= 2 and processes >= 1 "
            f"(got {steps}, {step_seconds}, {processes})."
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    files = rt.RunFiles(work_dir)
    for name in rt.CSV_FILES:
        (work_dir / name).unlink(missing_ok=True)
    samples, cpu_seconds = _run_steps(
        host, files, locustfile, steps, step_seconds, processes, request_timeout_seconds
    )
    measured = [
        step for users in dict.fromkeys(steps) if (step := _step(samples, users)) is not None
    ]
    usable = [step for step in measured if step.failure_ratio <= max_failure_ratio]
    if not usable:
        raise TargetError(
            f"capacity of {host}: no step of {list(steps)} users stayed under a failure ratio "
            f"of {max_failure_ratio} (steps: {[asdict(s) for s in measured]}); is the service "
            f"up? See {files.log}."
        )
    best = max(usable, key=lambda step: step.rps)
    last_two = measured[-2:]
    stats = rt.read_stats(files)
    all_requests = stats["total"]["requests"] if stats else 0
    result = Capacity(
        host=host,
        processes=processes,
        step_seconds=step_seconds,
        steps=measured,
        capacity_rps=round(best.rps, 1),
        best_users=best.users,
        saturated=len(last_two) < 2 or last_two[1].rps < 1.1 * last_two[0].rps,
        locust_cpu_seconds=round(cpu_seconds, 2),
        locust_cpu_ms_per_request=(
            round(1000 * cpu_seconds / all_requests, 3) if all_requests else None
        ),
    )
    rt.write_json(work_dir / CAPACITY_FILE, result.to_json())
    return result


def _run_steps(
    host: str,
    files: rt.RunFiles,
    locustfile: Path,
    steps: tuple[int, ...],
    step_seconds: float,
    processes: int,
    request_timeout_seconds: float,
) -> tuple[list[_Sample], float]:
    """Run the closed-loop steps; the exporter's readings and Locust's CPU seconds."""
    metrics_port = _free_port()  # not the experiments' port: Prometheus must not see this
    options = [
        "--host",
        host,
        "--shape",
        "steps",
        "--steps",
        ",".join(str(n) for n in steps),
        "--step-seconds",
        str(step_seconds),
        "--users",
        str(max(steps)),
        "--spawn-rate",
        str(max(steps)),
        "--closed-loop",
        "--request-timeout",
        str(request_timeout_seconds),
        "--fail-ratio",
        "1",
    ]
    if processes > 1:
        options += ["--processes", str(processes)]
    process = rt.spawn_locust(rt.locust_command(locustfile, files, metrics_port, options), files)
    samples, status, cpu_seconds = _sample_until_exit(
        process, f"http://127.0.0.1:{metrics_port}/metrics", len(steps) * step_seconds + 60.0
    )
    if status != 0:
        raise TargetError(
            f"the capacity measurement's Locust exited with code {status}; see {files.log}. "
            f"Last lines:\n{rt.log_tail(files)}"
        )
    return samples, cpu_seconds


@dataclass(frozen=True)
class _Sample:
    at: float  # monotonic seconds
    users: int
    requests: float
    failures: float


def _step(samples: list[_Sample], users: int) -> Step | None:
    """The sustained rate while `users` ran: first to last reading of the step, after it
    settled."""
    during = [s for s in samples if s.users == users]
    if not during:
        return None
    settled = [s for s in during if s.at >= during[0].at + _SETTLE_SECONDS]
    if len(settled) < 2:
        return None
    first, last = settled[0], settled[-1]
    seconds = last.at - first.at
    requests = last.requests - first.requests
    if seconds <= 0:
        return None
    failures = last.failures - first.failures
    return Step(
        users=users,
        seconds=round(seconds, 2),
        requests=requests,
        rps=round(requests / seconds, 1),
        failure_ratio=round(failures / requests, 4) if requests else 1.0,
    )


def _read(client: httpx.Client, url: str) -> _Sample | None:
    try:
        text = client.get(url, timeout=1.0).text
    except httpx.HTTPError:
        return None
    users, requests, failures = 0, 0.0, 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "helius_client_users":
                users = int(sample.value)
            elif sample.name == "helius_client_requests_total":
                requests += sample.value
                if sample.labels.get("outcome") == "failure":
                    failures += sample.value
    return _Sample(time.monotonic(), users, requests, failures)


def _sample_until_exit(
    process: subprocess.Popen[bytes], url: str, budget: float
) -> tuple[list[_Sample], int, float]:
    """Read the exporter every _SAMPLE_SECONDS until Locust exits."""
    samples: list[_Sample] = []
    deadline = time.monotonic() + budget
    with httpx.Client() as client:
        while True:
            done = _wait_with_cpu(process, deadline)
            if done is not None:
                return samples, *done
            if (sample := _read(client, url)) is not None:
                samples.append(sample)
            time.sleep(_SAMPLE_SECONDS)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _wait_with_cpu(process: subprocess.Popen[bytes], deadline: float) -> tuple[int, float] | None:
    """None while Locust runs; once it exited, its exit code and the CPU seconds it and its
    reaped children (the --processes workers) used. Kills its group after `deadline`."""
    pid, status, usage = os.wait4(process.pid, os.WNOHANG)
    if not pid and time.monotonic() > deadline:
        kill_group(process.pid, signal.SIGKILL)
        os.wait4(process.pid, 0)
        process.returncode = -9
        raise TargetError("the capacity measurement did not end in time and was killed.")
    if not pid:
        return None
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_utime + usage.ru_stime
