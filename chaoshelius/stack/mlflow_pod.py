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

import os
import sys
from typing import Any


def main(argv: list[str]) -> None:
    import mlflow.server as server_module
    import uvicorn.main
    from mlflow.cli import cli

    original: Any = getattr(server_module, "_exec_cmd")  # noqa: B009 (private name)

    def _serve_in_process(cmd: list[str], *args: Any, **kwargs: Any) -> Any:
        if list(cmd[1:3]) != ["-m", "uvicorn"] or "--workers" not in cmd:
            return original(cmd, *args, **kwargs)
        os.environ.update(kwargs.get("extra_env") or {})
        uvicorn_main: Any = uvicorn.main.main
        uvicorn_main(list(cmd[3:]))  # raises SystemExit when the server stops
        return None

    setattr(server_module, "_exec_cmd", _serve_in_process)  # noqa: B010
    if "--expose-prometheus" in argv:  # the spawned server would find it made; in-process, not
        os.makedirs(argv[argv.index("--expose-prometheus") + 1], exist_ok=True)
    cli(["server", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
