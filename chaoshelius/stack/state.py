"""The state directory's layout and `stack.json` (how the CLI finds a running stack).

`stack.json` is a `StackState`, written by the daemon (chaoshelius/stack/status.py) and read
by the CLI, `up`/`down` and the clients only through `write_state` / `read_state` here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_STATE_DIR = Path(".helius") / "stack"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


@dataclass(frozen=True)
class StackPaths:
    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "stack.json"

    @property
    def profile_file(self) -> Path:
        return self.root / "profile.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def supervisor_log(self) -> Path:
        return self.logs / "supervisor.log"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def artifacts(self) -> Path:
        return self.root / "mlflow-artifacts"

    @property
    def postgres_data(self) -> Path:
        return self.root / "postgres" / "data"

    @property
    def prometheus_config(self) -> Path:
        return self.root / "prometheus" / "prometheus.yml"

    @property
    def prometheus_data(self) -> Path:
        return self.root / "prometheus" / "data"

    @property
    def targets(self) -> Path:
        return self.root / "prometheus" / "targets" / "pods.json"

    @property
    def prometheus_rules(self) -> Path:
        """A profile's patched copy of the alert rules (`alert_rules_patch`); unused without."""
        return self.root / "prometheus" / "rules" / "helius-alerts.yml"

    def create(self) -> None:
        """The state directory and its subdirectories, 0700: only the stack's user reads them
        (profiles, logs, the token and the database password live here)."""
        private_dir(self.root)
        for directory in (self.logs, self.run, self.cache, self.artifacts, self.targets.parent):
            private_dir(directory)
        private_dir(self.targets.parent.parent)


def private_dir(path: Path) -> None:
    """mkdir -p, then 0700 on `path` itself (a reused directory is tightened too)."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    path.chmod(PRIVATE_DIR_MODE)


def write_private(path: Path, text: str) -> None:
    """Atomic rewrite of a 0600 file: created 0600 (never readable by others, not even for a
    moment), then renamed over `path` (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)  # O_CREAT's mode does not apply to an existing file
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            fd = -1
            out.write(text)
    finally:
        if fd >= 0:
            os.close(fd)
    tmp.replace(path)


def open_private_log(path: Path) -> BinaryIO:
    """Open a log for appending, 0600 (a log may carry a pod's environment or a URI)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE)
    os.fchmod(fd, PRIVATE_FILE_MODE)
    return os.fdopen(fd, "ab")


class StackPids(BaseModel):
    """The stack's own processes (None: not started, or already gone)."""

    model_config = ConfigDict(extra="ignore")

    supervisor: int | None = None
    prometheus: int | None = None
    postgres: int | None = None


class StackState(BaseModel):
    """`stack.json`: the running stack's phase, ports, processes and profile."""

    model_config = ConfigDict(extra="ignore")

    phase: str = "starting"
    error: str | None = None
    base_port: int | None = None
    # StackPorts.by_name(): control, reco_service, mlflow_service, prometheus, postgres,
    # loadgen and the path proxies by edge name
    ports: dict[str, int] = Field(default_factory=dict)
    pids: StackPids = Field(default_factory=StackPids)
    pod_process_groups: list[int] = Field(default_factory=list)
    proxy_balancing: dict[str, str] = Field(default_factory=dict)
    # str(pid) -> ProcessIdentity.to_json(): `down` signals a recorded pid only if it is
    # still that process
    identities: dict[str, dict[str, Any]] = Field(default_factory=dict)
    profile: dict[str, Any] = Field(default_factory=dict)


def write_state(path: Path, state: StackState) -> None:
    """Atomic 0600 rewrite of stack.json."""
    write_private(path, json.dumps(state.model_dump(mode="json"), indent=1, sort_keys=True))


def read_state(path: Path) -> StackState | None:
    """stack.json, None if there is none or it is not a stack's state."""
    try:
        return StackState.model_validate_json(path.read_text())
    except (FileNotFoundError, ValidationError):
        return None
