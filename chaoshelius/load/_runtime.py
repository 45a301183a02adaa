"""What start_load / stop_load / the probes share: run-dir files, the Locust process, its CSVs.

Never imports Locust: the load runs in its own process (importing Locust gevent-patches the
importing process).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from chaoshelius.config import HarnessConfig
from chaoshelius.exceptions import ConfigurationError

CSV_PREFIX = "locust"
PID_FILE = "locust.pid"
LOG_FILE = "locust.log"
LOAD_FILE = "load.json"  # what the load was asked for and what it measured (the report shows it)
RATE_ENV = "HELIUS_LOAD_RATE"
PROCESSES_ENV = "HELIUS_LOAD_PROCESSES"
CSV_FILES = ("locust_stats.csv", "locust_failures.csv", "locust_stats_history.csv")
AGGREGATED = "Aggregated"

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
        return self.run_dir / "locust_stats_history.csv"

    @property
    def stats_csv(self) -> Path:
        return self.run_dir / "locust_stats.csv"

    @property
    def failures_csv(self) -> Path:
        return self.run_dir / "locust_failures.csv"


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


def _proc_stat_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[0]


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
    if _proc_stat_state(pid) in ("Z", "X"):
        return False
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
    end = time.monotonic() + deadline_seconds
    while True:
        if not is_locust(pid):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.1)


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal Locust's process group (start_load makes Locust a session leader: pgid == pid)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


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


def _number(value: str | None) -> float | None:
    if value is None or value in ("", "N/A"):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _row_stats(row: dict[str, str]) -> dict[str, Any]:
    requests = int(_number(row.get("Request Count")) or 0)
    failures = int(_number(row.get("Failure Count")) or 0)
    return {
        "requests": requests,
        "failures": failures,
        "failure_ratio": failures / requests if requests else 0.0,
        "rps": _number(row.get("Requests/s")),
        "median_ms": _number(row.get("Median Response Time")),
        "average_ms": _number(row.get("Average Response Time")),
        "p95_ms": _number(row.get("95%")),
        "p99_ms": _number(row.get("99%")),
        "max_ms": _number(row.get("Max Response Time")),
    }


def read_stats(files: RunFiles) -> dict[str, Any] | None:
    """Locust's CSV summary as a dict, or None when Locust has not written it (yet)."""
    try:
        with files.stats_csv.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        return None
    total: dict[str, Any] | None = None
    by_name: dict[str, Any] = {}
    for row in rows:
        name = row.get("Name") or ""
        if name == AGGREGATED:
            total = _row_stats(row)
        else:
            by_name[f"{row.get('Type', '')} {name}".strip()] = _row_stats(row)
    failures: list[dict[str, Any]] = []
    try:
        with files.failures_csv.open(newline="") as handle:
            for row in csv.DictReader(handle):
                failures.append(
                    {
                        "method": row.get("Method", ""),
                        "name": row.get("Name", ""),
                        "error": row.get("Error", ""),
                        "occurrences": int(_number(row.get("Occurrences")) or 0),
                    }
                )
    except FileNotFoundError:
        pass
    return {
        "run_dir": str(files.run_dir),
        "total": total or _row_stats({}),
        "by_name": by_name,
        "failures": failures,
    }


def steady_rate(history_csv: Path, users: int, skip_rows: int = 0) -> dict[str, float] | None:
    """The rate the load really had once all `users` ran: from Locust's per-second history
    (Aggregated rows), requests and failures between the first and the last row with that
    user count (after `skip_rows` of them). None when there are not two such rows."""
    try:
        with history_csv.open(newline="") as handle:
            rows = [
                row
                for row in csv.DictReader(handle)
                if row.get("Name") == AGGREGATED and _number(row.get("User Count")) == users
            ]
    except FileNotFoundError:
        return None
    rows = rows[skip_rows:]
    if len(rows) < 2:
        return None
    first, last = rows[0], rows[-1]
    seconds = (_number(last.get("Timestamp")) or 0) - (_number(first.get("Timestamp")) or 0)
    if seconds <= 0:
        return None
    requests = (_number(last.get("Total Request Count")) or 0) - (
        _number(first.get("Total Request Count")) or 0
    )
    failures = (_number(last.get("Total Failure Count")) or 0) - (
        _number(first.get("Total Failure Count")) or 0
    )
    return {
        "seconds": seconds,
        "requests": requests,
        "rps": requests / seconds,
        "failure_ratio": failures / requests if requests else 0.0,
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None
