"""What start_load / stop_load / the probes share: run-dir files, the Locust process, its CSVs.

Never imports Locust: the load runs in its own process (importing Locust gevent-patches the
importing process).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from chaoshelius.config import HarnessConfig
from chaoshelius.exceptions import ConfigurationError
from chaoshelius.load._jsonfile import read_json, write_json
from chaoshelius.load.locust_csv import (
    AGGREGATED,
    CSV_FILES,
    CSV_PREFIX,
    FAILURES_FILE,
    HISTORY_FILE,
    STATS_FILE,
    aggregated_totals,
    failure_fields,
    number,
    read_rows,
    stats_fields,
)
from chaoshelius.stack.procs import kill_group, pid_alive, spawn_group, wait_until

__all__ = [
    "AGGREGATED",
    "CSV_FILES",
    "CSV_PREFIX",
    "LOAD_FILE",
    "LOG_FILE",
    "PID_FILE",
    "PROCESSES_ENV",
    "RATE_ENV",
    "LoadConfig",
    "RunFiles",
    "exit_code",
    "forget_finished_children",
    "is_locust",
    "load_config",
    "locust_command",
    "locustfile",
    "log_tail",
    "read_json",
    "read_pid",
    "read_stats",
    "run_files",
    "signal_group",
    "signal_process",
    "spawn_locust",
    "steady_rate",
    "wait_gone",
    "write_json",
]

PID_FILE = "locust.pid"
LOG_FILE = "locust.log"
LOAD_FILE = "load.json"  # what the load was asked for and what it measured (the report shows it)
RATE_ENV = "HELIUS_LOAD_RATE"
PROCESSES_ENV = "HELIUS_LOAD_PROCESSES"

# Popen objects of the Locust processes this Python process started: lets stop_load reap its
# own child (a zombie still answers kill(pid, 0)) and report the exit code.
_children: dict[int, subprocess.Popen[bytes]] = {}


class LoadConfig(HarnessConfig):
    """HarnessConfig plus the load's own keys: `helius_locustfile` (path to the locustfile;
    default: `loadtests/locustfile.py` of the checkout the harness is installed from),
    `helius_load_rate` (requests/s when start_load is given none; else the environment
    variable HELIUS_LOAD_RATE, else 250) and `helius_load_processes` (Locust processes; else
    HELIUS_LOAD_PROCESSES, else as many as the rate needs)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    helius_locustfile: Path | None = None
    helius_load_rate: float | None = Field(default=None, gt=0)
    helius_load_processes: int | None = Field(default=None, ge=1)


def load_config(configuration: dict[str, Any] | None) -> LoadConfig:
    config = LoadConfig.from_chaos(configuration)
    assert isinstance(config, LoadConfig)  # noqa: S101  narrows the type for mypy
    return config


@dataclass(frozen=True)
class RunFiles:
    run_dir: Path

    @property
    def pid(self) -> Path:
        return self.run_dir / PID_FILE

    @property
    def log(self) -> Path:
        return self.run_dir / LOG_FILE

    @property
    def csv_prefix(self) -> Path:
        return self.run_dir / CSV_PREFIX

    @property
    def load_json(self) -> Path:
        return self.run_dir / LOAD_FILE

    @property
    def history_csv(self) -> Path:
        return self.run_dir / HISTORY_FILE

    @property
    def stats_csv(self) -> Path:
        return self.run_dir / STATS_FILE

    @property
    def failures_csv(self) -> Path:
        return self.run_dir / FAILURES_FILE


def run_files(config: HarnessConfig) -> RunFiles:
    return RunFiles(config.helius_run_dir.expanduser().resolve())


def locustfile(config: LoadConfig) -> Path:
    """The configured locustfile, else the checkout's `loadtests/locustfile.py`."""
    if config.helius_locustfile is not None:
        path = config.helius_locustfile.expanduser().resolve()
        if not path.is_file():
            raise ConfigurationError(
                f"configuration key 'helius_locustfile' points to {path}, which is not a file."
            )
        return path
    path = Path(__file__).resolve().parents[2] / "loadtests" / "locustfile.py"
    if not path.is_file():
        raise ConfigurationError(
            f"no locustfile at {path} (the harness is not installed from a checkout): set the "
            "configuration key 'helius_locustfile' to the path of loadtests/locustfile.py."
        )
    return path


# --- the process ----------------------------------------------------------------------------


def locust_command(
    locust_file: Path, files: RunFiles, metrics_port: int, options: Sequence[str]
) -> list[str]:
    """Headless Locust with `options`, its CSVs in the run dir and its exporter on
    `metrics_port`."""
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locust_file),
        "--headless",
        *options,
        "--csv",
        str(files.csv_prefix),
        "--csv-full-history",
        "--only-summary",
        "--metrics-port",
        str(metrics_port),
    ]


def spawn_locust(command: Sequence[str], files: RunFiles) -> subprocess.Popen[bytes]:
    """Start Locust as the leader of its own process group (pgid == pid: it and its
    --processes workers are signalled together), its output to a fresh locust.log."""
    files.log.unlink(missing_ok=True)
    return spawn_group(command, files.log)


def read_pid(files: RunFiles) -> int | None:
    try:
        text = files.pid.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def forget_finished_children(files: RunFiles) -> None:
    """Reap Locust children of this process that ended (stopped from another process, or by
    their run time) and are no longer the run dir's current load."""
    current = read_pid(files)
    for pid, child in list(_children.items()):
        if child.poll() is not None and pid != current:
            del _children[pid]


def _reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None:
        child.poll()
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def is_locust(pid: int) -> bool:
    """True when `pid` is a live process that looks like our Locust (guards against a pidfile
    whose pid was reused by an unrelated process)."""
    _reap(pid)
    child = _children.get(pid)
    if child is not None:
        return child.returncode is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # not ours
    if Path("/proc/self").exists() and not pid_alive(pid):
        return False  # a zombie (or gone since)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no procfs (macOS): trust the pidfile
    except OSError:
        return False
    return b"locust" in cmdline


def exit_code(pid: int) -> int | None:
    child = _children.get(pid)
    return child.returncode if child is not None else None


def wait_gone(pid: int, deadline_seconds: float) -> bool:
    return wait_until(lambda: not is_locust(pid), deadline_seconds, 0.1)


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal Locust's process group (start_load makes Locust a session leader: pgid == pid)."""
    kill_group(pid, sig)


def signal_process(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def log_tail(files: RunFiles, lines: int = 15) -> str:
    try:
        text = files.log.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty log)"


# --- the CSVs -------------------------------------------------------------------------------


def _row_stats(row: dict[str, str]) -> dict[str, Any]:
    stats = stats_fields(row)
    del stats["method"], stats["name"]
    stats["failure_ratio"] = stats["failures"] / stats["requests"] if stats["requests"] else 0.0
    return stats


def read_stats(files: RunFiles) -> dict[str, Any] | None:
    """Locust's CSV summary as a dict, or None when Locust has not written it (yet)."""
    rows = read_rows(files.stats_csv)
    if rows is None:
        return None
    total: dict[str, Any] | None = None
    by_name: dict[str, Any] = {}
    for row in rows:
        name = row.get("Name") or ""
        if name == AGGREGATED:
            total = _row_stats(row)
        else:
            by_name[f"{row.get('Type', '')} {name}".strip()] = _row_stats(row)
    return {
        "run_dir": str(files.run_dir),
        "total": total or _row_stats({}),
        "by_name": by_name,
        "failures": [failure_fields(row) for row in read_rows(files.failures_csv) or []],
    }


def steady_rate(history_csv: Path, users: int, skip_rows: int = 0) -> dict[str, float] | None:
    """The rate the load really had once all `users` ran: from Locust's per-second history
    (Aggregated rows), requests and failures between the first and the last row with that
    user count (after `skip_rows` of them). None when there are not two such rows."""
    totals = [
        found
        for row in read_rows(history_csv) or []
        if number(row.get("User Count")) == users and (found := aggregated_totals(row))
    ][skip_rows:]
    if len(totals) < 2:
        return None
    (first_at, first_requests, first_failures), (last_at, last_requests, last_failures) = (
        totals[0],
        totals[-1],
    )
    seconds = last_at - first_at
    if seconds <= 0:
        return None
    requests = last_requests - first_requests
    failures = last_failures - first_failures
    return {
        "seconds": seconds,
        "requests": requests,
        "rps": requests / seconds,
        "failure_ratio": failures / requests if requests else 0.0,
    }
