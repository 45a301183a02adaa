"""Read the client load's state: is it running, and what did the clients see (Locust's CSVs).

For judging the fault window, prefer Prometheus over these probes: the client-side series
(helius_client_requests_total{name,outcome,reason}, helius_client_request_latency_seconds)
are scraped from the load generator and can be asked about any time range. These probes give
the run's totals, e.g. for a steady-state check or the report.
"""

from __future__ import annotations

from typing import Any

from chaoslib.types import Configuration, Secrets

from chaoshelius.exceptions import TargetError
from chaoshelius.load import _runtime as rt

__all__ = ["load_is_running", "load_stats"]


def load_is_running(configuration: Configuration = None, secrets: Secrets = None) -> bool:
    """True while the Locust process started by start_load (per `<helius_run_dir>/locust.pid`)
    is alive."""
    files = rt.run_files(rt.load_config(configuration))
    rt.forget_finished_children(files)
    pid = rt.read_pid(files)
    return pid is not None and rt.is_locust(pid)


def load_stats(configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Locust's statistics for the current (or last) load, from `<helius_run_dir>/locust_*.csv`
    (Locust rewrites them every second while it runs, and once more when it stops).

    Returns {"run_dir", "total": {"requests", "failures", "failure_ratio", "rps", "median_ms",
    "average_ms", "p95_ms", "p99_ms", "max_ms"}, "by_name": {"POST /predict": {...}, ...},
    "failures": [{"method", "name", "error", "occurrences"}]}. Fails when there are no stats
    (no load was started in this run directory): no data is not a pass.
    """
    files = rt.run_files(rt.load_config(configuration))
    stats = rt.read_stats(files)
    if stats is None:
        raise TargetError(
            f"no Locust statistics in {files.run_dir} ({files.stats_csv.name} is missing): "
            "start the load with chaoshelius.load.actions.start_load in this run directory "
            "(configuration key 'helius_run_dir') and let it run for at least a second."
        )
    return stats
