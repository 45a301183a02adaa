"""Capacity mode: measure, now, the request rate the stack (and this machine) sustains.

A short closed-loop step test: Locust with no wait between tasks, at each user count of
`steps` for `step_seconds`, against the recommender (through the same proxy the load uses).
The sustained rate of a step is what the stack answered once that step's users all ran; the
capacity is the best step whose failure ratio stayed under `max_failure_ratio`. `start_load`
(capacity_fraction=...) and `chaoshelius load capacity` use it.

The figure is the capacity of the whole machine, load generator included: on a small machine
Locust's own CPU is part of the limit, so the result also says how much CPU Locust used per
request (`locust_cpu_ms_per_request`) and the rate one fully busy core of Locust would give.
Other work on the machine moves the figure: measure at run time, never hard-code it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chaoshelius.exceptions import TargetError
from chaoshelius.load import _runtime as rt

DEFAULT_STEPS = (8, 16, 32, 64)
DEFAULT_STEP_SECONDS = 6.0
CAPACITY_FILE = "capacity.json"
_SETTLE_ROWS = 1  # history rows skipped at the start of each step (its users still spawning)


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
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile),
        "--headless",
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
        "--metrics-port",
        "0",  # not the experiment's exporter: Prometheus must not see this as user traffic
        "--csv",
        str(files.csv_prefix),
        "--csv-full-history",
        "--only-summary",
    ]
    if processes > 1:
        command += ["--processes", str(processes)]
    budget = len(steps) * step_seconds + 60.0
    with files.log.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    status, cpu_seconds = _wait_with_cpu(process, budget)
    if status != 0:
        raise TargetError(
            f"the capacity measurement's Locust exited with code {status}; see {files.log}. "
            f"Last lines:\n{rt.log_tail(files)}"
        )
    measured = [
        step
        for users in dict.fromkeys(steps)
        if (step := _step(files.history_csv, users, step_seconds)) is not None
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
    saturated = len(last_two) < 2 or last_two[1].rps < 1.1 * last_two[0].rps
    stats = rt.read_stats(files)
    all_requests = stats["total"]["requests"] if stats else 0
    result = Capacity(
        host=host,
        processes=processes,
        step_seconds=step_seconds,
        steps=measured,
        capacity_rps=round(best.rps, 1),
        best_users=best.users,
        saturated=saturated,
        locust_cpu_seconds=round(cpu_seconds, 2),
        locust_cpu_ms_per_request=(
            round(1000 * cpu_seconds / all_requests, 3) if all_requests else None
        ),
    )
    rt.write_json(work_dir / CAPACITY_FILE, result.to_json())
    return result


def _step(history_csv: Path, users: int, step_seconds: float) -> Step | None:
    rate = rt.steady_rate(history_csv, users, skip_rows=_SETTLE_ROWS)
    if rate is None:
        return None
    return Step(
        users=users,
        seconds=rate["seconds"],
        requests=rate["requests"],
        rps=round(rate["rps"], 1),
        failure_ratio=round(rate["failure_ratio"], 4),
    )


def _wait_with_cpu(process: subprocess.Popen[bytes], budget: float) -> tuple[int, float]:
    """Wait for Locust (killing its group after `budget` s); its exit code and the CPU seconds
    it and its reaped children (the --processes workers) used."""
    deadline = time.monotonic() + budget
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            os.killpg(process.pid, 9)
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            raise TargetError(
                f"the capacity measurement did not end within {budget:.0f} s and was killed."
            )
        time.sleep(0.2)
