"""The load plan: what start_load decided, handed to Locust on either target, kept in load.json.

`LoadPlan` is made once by `chaoshelius.load.actions.start_load` (rate, users, spawn rate,
processes, run time, host, shape, timeout, churn, and where the rate came from) and reaches the
load generator as Locust options, spelt in one place here:

- local target: `locust_argv()`, the command-line options of the Locust child process;
- kubernetes target: `locust_env()`, the `LOCUST_<OPTION>` variables of the ConfigMap
  `loadgen-settings` that the in-cluster master and workers read
  (manifests/components/chaos-harness/loadgen.yaml).

loadtests/locustfile.py declares its Helius options with `locust_env_name`, the shapes and the
defaults named here, so both ends agree on names and values. The plan is written to
`<helius_run_dir>/load.json` with the run's facts (pid, command, started_at, expires_at, and
what stop_load measured) by `write`, and read back, validated, by `read`.

Stdlib only: the locustfile imports this module inside the slim harness image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from chaoshelius.load._jsonfile import read_json, write_json

__all__ = [
    "DEFAULT_NEW_CONNECTION_SHARE",
    "DEFAULT_REQUEST_TIMEOUT_SECONDS",
    "LOCUST_SHAPES",
    "SHAPES",
    "LoadPlan",
    "locust_env_name",
]

SHAPES = ("steady", "ramp")  # what start_load runs
LOCUST_SHAPES = (*SHAPES, "steps")  # the locustfile's, with the capacity measurement's steps
DEFAULT_REQUEST_TIMEOUT_SECONDS = 5.0
DEFAULT_NEW_CONNECTION_SHARE = 0.05
LOCAL = "local"  # the target whose load is a Locust child process

# plan field -> the Locust option that carries it to the load generator, on both targets
_LOCUST_OPTIONS = (
    ("users", "--users"),
    ("spawn_rate", "--spawn-rate"),
    ("host", "--host"),
    ("shape", "--shape"),
    ("request_timeout_seconds", "--request-timeout"),
    ("rate", "--target-rps"),
    ("new_connection_share", "--new-connection-share"),
)


# the numeric fields, as load.json may spell them (500 for 500.0)
_NUMBERS: dict[str, type[int] | type[float]] = {
    "rate": float,
    "users": int,
    "spawn_rate": float,
    "processes": int,
    "duration_seconds": int,
    "request_timeout_seconds": float,
    "new_connection_share": float,
}


def locust_env_name(flag: str) -> str:
    """The environment variable Locust reads an option from: `--target-rps` ->
    `LOCUST_TARGET_RPS` (Locust's own rule, which the locustfile's options follow too)."""
    return "LOCUST_" + flag.lstrip("-").replace("-", "_").upper()


def _text(value: object) -> str:
    """A Locust option's value as text: numbers without a needless `.0`."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class LoadPlan:
    """The load start_load runs: `rate` requests/s in total shared by `users` clients spawned
    at `spawn_rate`/s over `processes` Locust processes (the cluster's workers), for
    `duration_seconds`, against `host` (None on a cluster: the manifests' Service)."""

    rate: float
    rate_source: str
    users: int
    spawn_rate: float
    processes: int
    duration_seconds: int
    host: str | None
    shape: str = "steady"
    request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS
    new_connection_share: float = DEFAULT_NEW_CONNECTION_SHARE
    capacity_fraction: float | None = None
    capacity: dict[str, Any] | None = None  # the capacity measurement (capacity_fraction)
    target: str = LOCAL

    def __post_init__(self) -> None:
        problems = [
            what
            for what, bad in (
                ("rate >= 0", not (self.rate >= 0 and math.isfinite(self.rate))),
                ("users >= 1", self.users < 1),
                ("spawn_rate > 0", not self.spawn_rate > 0),
                ("processes >= 1", self.processes < 1),
                ("duration_seconds >= 1", self.duration_seconds < 1),
                (f"shape in {SHAPES}", self.shape not in SHAPES),
                ("request_timeout_seconds > 0", not self.request_timeout_seconds > 0),
                ("0 <= new_connection_share <= 1", not 0 <= self.new_connection_share <= 1),
                ("a host on the local target", self.target == LOCAL and not self.host),
            )
            if bad
        ]
        if problems:
            raise ValueError(f"a load plan needs {', '.join(problems)}: {self!r}")

    # ---- to the load generator -------------------------------------------------------------
    def locust_options(self) -> dict[str, str]:
        """The Locust options the plan sets, flag -> value (the host only when there is one:
        on a cluster the ConfigMap's own LOCUST_HOST, the manifests' Service, stays)."""
        return {
            flag: _text(getattr(self, name))
            for name, flag in _LOCUST_OPTIONS
            if getattr(self, name) not in (None, "")
        }

    def locust_argv(self) -> list[str]:
        """The local Locust's command-line options: the plan, its run time, its processes."""
        argv = [part for item in self.locust_options().items() for part in item]
        argv += ["--run-time", f"{self.duration_seconds}s"]
        if self.processes > 1:
            argv += ["--processes", str(self.processes)]
        return argv

    def locust_env(self) -> dict[str, str]:
        """The cluster's `LOCUST_<OPTION>` settings: the plan and the workers the master
        expects (no run time: the master runs until scaled to 0, the expiry bounds it)."""
        settings = {locust_env_name(flag): value for flag, value in self.locust_options().items()}
        settings[locust_env_name("--expect-workers")] = str(self.processes)
        return settings

    # ---- load.json -------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.target == LOCAL:
            del data["target"]  # load.json of a local load never named it
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoadPlan:
        """The plan in a load.json record (its other keys are the run's facts); ValueError when
        a field is missing or malformed."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        try:
            for name, kind in _NUMBERS.items():
                if name in values:
                    values[name] = kind(values[name])
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a load plan: {exc}") from exc

    def write(self, path: Path, **facts: Any) -> None:
        """Write `path` (load.json): the plan and the run's facts beside it."""
        write_json(path, {**self.to_json(), **facts})

    @classmethod
    def read(cls, path: Path) -> tuple[LoadPlan, dict[str, Any]] | None:
        """The plan in `path` and the run's facts beside it; None when there is no record."""
        data = read_json(path)
        if data is None:
            return None
        plan = cls.from_json(data)
        names = {f.name for f in fields(cls)}
        return plan, {key: value for key, value in data.items() if key not in names}
