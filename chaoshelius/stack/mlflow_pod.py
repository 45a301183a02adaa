"""Run `mlflow server` as ONE process: the same CLI, but uvicorn runs in-process.

`mlflow server` imports MLflow, prepares the backend (schema migration included), then spawns
`python -m uvicorn mlflow.server.fastapi_app:app`, which imports MLflow a second time. On two
shared cores that doubles each replica's start-up CPU and its memory (~250 MiB per parent).
This launcher runs the real `mlflow server` command (same options, same environment, same
checks) and swaps only the final spawn for an in-process `uvicorn` with the same arguments, so
a pod is a single process. If MLflow's spawn step changes shape, it falls back to the original.

Usage: python -m chaoshelius.stack.mlflow_pod <mlflow server options...>
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

# Options whose effect MLflow reads when `mlflow.server` is imported (the spawned server imports
# it after `mlflow server` has put them in its environment; in-process, we must do it first).
_IMPORT_TIME_ENV = {
    "--expose-prometheus": "prometheus_multiproc_dir",  # the /metrics exporter
    "--allowed-hosts": "MLFLOW_SERVER_ALLOWED_HOSTS",  # the Host-header check
}


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv[:-1] else None


def main(argv: list[str]) -> None:
    for option, variable in _IMPORT_TIME_ENV.items():
        value = _option(argv, option)
        if value is not None:
            os.environ[variable] = value
    metrics_dir = _option(argv, "--expose-prometheus")
    if metrics_dir is not None:
        os.makedirs(metrics_dir, exist_ok=True)

    # uvicorn first: `mlflow.server` installs its security middleware (the Host check) only
    # when it is imported into a process that already runs a server
    uvicorn_main: Any = importlib.import_module("uvicorn.main").main
    import mlflow.server as server_module
    from mlflow.cli import cli

    original: Any = getattr(server_module, "_exec_cmd")  # noqa: B009 (private name)

    def _serve_in_process(cmd: list[str], *args: Any, **kwargs: Any) -> Any:
        if list(cmd[1:3]) != ["-m", "uvicorn"] or "--workers" not in cmd:
            return original(cmd, *args, **kwargs)
        os.environ.update(kwargs.get("extra_env") or {})
        uvicorn_main(list(cmd[3:]))  # raises SystemExit when the server stops
        return None

    setattr(server_module, "_exec_cmd", _serve_in_process)  # noqa: B010
    cli(["server", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
