"""The control API's data shapes, shared by the server (control.py) and every client.

One module, imported by the daemon's routes, `ControlClient` (the CLI, the tests),
`LocalDriver` (the chaos activities), the suite runner and the test fake: a renamed field
breaks them all at once, at type-check time, instead of one client guessing keys.
Pydantic only (no FastAPI): clients import it without the server's dependencies.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from chaoshelius.stack.faults import MAX_TTL_SECONDS
from chaoshelius.topology import PathMode

# the whole body of any request the control API accepts; larger ones get 413
MAX_BODY_BYTES = 64 * 1024
# a selector longer than this is refused (400) before it is parsed
MAX_SELECTOR_CHARS = 1024
# a profile is named, never sent: the stem of a shipped profile file (or "default")
PROFILE_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"

Ttl = Annotated[float, Field(gt=0, le=MAX_TTL_SECONDS)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    # clients accept fields a newer server adds
    model_config = ConfigDict(extra="ignore")


# -- requests -----------------------------------------------------------------------------------
class KillRequest(_Request):
    selector: str = Field(default="", max_length=MAX_SELECTOR_CHARS)
    count: int | None = Field(default=None, ge=1)


class ScaleRequest(_Request):
    replicas: int = Field(ge=0, le=9)
    ttl_seconds: Ttl


class DrainRequest(_Request):
    ttl_seconds: Ttl


class PathFaultRequest(_Request):
    mode: PathMode
    latency_ms: int = Field(default=0, ge=0, le=600_000)
    ttl_seconds: Ttl


class EmptyRequest(_Request):
    """The body of a state-changing route that takes no parameter: `{}`."""


class ProfileRequest(_Request):
    """`PUT /profile`: the name of a shipped profile. Nothing else: no app, no environment."""

    name: str = Field(pattern=PROFILE_NAME_PATTERN)


# -- responses ----------------------------------------------------------------------------------
class ErrorBody(_Response):
    error: str


class Pod(_Response):
    name: str
    app: str
    zone: str
    namespace: str
    labels: dict[str, str]
    state: str
    ready: bool
    restarts: int
    slot: int
    port: int
    url: str
    pid: int | None
    started_at: float
    log: str


class Fault(_Response):
    id: str
    kind: str
    target: str
    params: dict[str, Any]
    started_at: float
    expires_at: float


class ProxyStatus(_Response):
    mode: str
    open_connections: int
    balancing: str | None = None  # service proxies: "request" or "connection"


class Status(_Response):
    phase: str
    error: str | None
    started_at: float
    ready_at: float | None
    profile: dict[str, Any]
    base_port: int
    state_dir: str
    endpoints: dict[str, str]
    pods: list[Pod]
    faults: list[Fault]
    drained_zones: list[str]
    proxies: dict[str, ProxyStatus]


class PodList(_Response):
    pods: list[Pod]


class Killed(_Response):
    killed: list[str]


class Injected(_Response):
    fault: Fault


class Removed(_Response):
    removed: list[Fault]


class FaultList(_Response):
    faults: list[Fault]


class EventList(_Response):
    events: list[dict[str, Any]]


class ProfileApplied(_Response):
    name: str
    profile: dict[str, Any]


class Stopping(_Response):
    stopping: bool
