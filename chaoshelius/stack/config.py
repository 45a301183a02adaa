"""Stack profiles: what the supervisor runs (replicas, zones, the recommender's app and env).

The default profile is the system as shipped. Negative controls (chaoshelius/negative/) load
fragile variants from a JSON or YAML file with `chaoshelius stack up --profile FILE`.

A profile names code (`reco_app`) and environment (`reco_env`), so it is code: it comes from a
file the stack's owner chose at `up`, or, for a running stack (`PUT /profile`), from a file
shipped in the repository, by name (`shipped_profile`). Never from an HTTP body.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from chaoshelius.stack.errors import NotFound, StackError
from chaoshelius.topology import MLFLOW_LIVENESS, RECO_LIVENESS, ZONES, Probe

# The shipped profiles (the negative controls' fragile variants, chaoshelius/negative/profiles):
# the stack names where they are, and the negative controls read it from here.
PROFILES_DIR = Path(__file__).resolve().parent.parent / "negative" / "profiles"


class AppPlacement(BaseModel):
    """Replicas of one app; replica i runs in zones[i % len(zones)]."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    replicas: int = Field(default=3, ge=0, le=9)
    zones: tuple[str, ...] = ZONES

    @field_validator("zones")
    @classmethod
    def _known_zones(cls, zones: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [zone for zone in zones if zone not in ZONES]
        if unknown or not zones:
            raise ValueError(f"zones must be a non-empty subset of {list(ZONES)}, got {unknown}")
        return zones

    def zone_of(self, index: int) -> str:
        return self.zones[index % len(self.zones)]


class LivenessProbe(BaseModel):
    """A liveness probe the supervisor runs like the kubelet (defaults: the manifests')."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(pattern=r"^/[\x21-\x7e]{0,200}$")
    period_seconds: float = Field(gt=0, le=300)
    failure_threshold: int = Field(ge=1, le=100)
    timeout_seconds: float = Field(gt=0, le=60)

    @classmethod
    def of(cls, probe: Probe) -> LivenessProbe:
        return cls(**probe._asdict())

    def as_probe(self) -> Probe:
        return Probe(self.path, self.period_seconds, self.failure_threshold, self.timeout_seconds)


class ReadinessProbe(BaseModel):
    """How the supervisor probes an app's readiness path (defaults: the local stack's, faster
    than the manifests' 5 s period so a fault's edges are seen within a second).

    `initial_delay_seconds` is the kubelet's `initialDelaySeconds`: no readiness probe (so not
    Ready) until that long after the pod started. A slot 0 MLflow pod still lets the other
    replicas start once it answers (it migrated the schema), as a migration Job would on a
    cluster, so the delay costs a stack's boot once, not once per replica."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial_delay_seconds: float = Field(default=0.0, ge=0, le=600)
    period_seconds: float = Field(default=0.5, gt=0, le=60)
    failure_threshold: int = Field(default=2, ge=1, le=100)
    timeout_seconds: float = Field(default=1.5, gt=0, le=60)


# A Prometheus duration as rules files write it (`for: 10s`, `1m30s`)
PROM_DURATION = r"^([0-9]+(ms|s|m|h|d|w|y))+$"


class AlertRulePatch(BaseModel):
    """A change to one alert of the shipped rules file (`alert_rules_patch`): its `for` and/or
    its `expr`. The stack's Prometheus then loads a patched copy; the file is not touched."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    for_: str | None = Field(default=None, alias="for", pattern=PROM_DURATION)
    expr: str | None = Field(default=None, min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _changes_something(self) -> AlertRulePatch:
        if self.for_ is None and self.expr is None:
            raise ValueError("an alert rule patch needs `for` or `expr`")
        return self


# fields whose change only needs new recommender pods (what the negative profiles change)
RECO_FIELDS = frozenset(
    {"name", "reco", "reco_app", "reco_env", "reco_mlflow_endpoint", "reco_liveness"}
)
# fields a running stack applies to what runs, without new pods: MLflow's probes (the kubelet's
# settings, as once a rollout has completed) and the alert rules (Prometheus reloads them)
LIVE_FIELDS = frozenset({"mlflow_liveness", "mlflow_readiness", "alert_rules_patch"})


class StackConfig(BaseModel):
    """A stack profile. Every field has the shipped default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "default"
    reco: AppPlacement = AppPlacement()
    mlflow: AppPlacement = AppPlacement()
    # import string of the recommender's app factory (uvicorn --factory)
    reco_app: str = "helius_reco.main:create_app"
    # extra environment for the recommender pods (wins over the stack's own HELIUS_* values)
    reco_env: dict[str, str] = Field(default_factory=dict)
    # "service": through the reco-mlflow path proxy to the MLflow service proxy (HA);
    # "pod": the path proxy forwards to MLflow replica 0 only, whatever its health (fragile)
    reco_mlflow_endpoint: Literal["service", "pod"] = "service"
    # how the recommender service proxy balances: "request" (an ingress: a ready pod per HTTP
    # request) or "connection" (kube-proxy: a pod per TCP connection, kept while it is open)
    reco_proxy_balancing: Literal["request", "connection"] = "request"
    refresh_interval_seconds: float = Field(default=2.0, gt=0)
    # train and register `reco@champion` on first start (needs helius_reco installed)
    bootstrap_model: bool = True
    # fork pods from a parent that imported their modules once (chaoshelius.stack.prefork);
    # false: every pod is a cold `python -m` start (slower; for an app that cannot be forked)
    prefork_pods: bool = True
    # delay before a killed pod is replaced (ReplicaSet-like)
    replace_delay_seconds: float = Field(default=1.5, ge=0)
    # liveness probes run like the kubelet (None: not probed); defaults are the manifests'
    reco_liveness: LivenessProbe | None = LivenessProbe.of(RECO_LIVENESS)
    mlflow_liveness: LivenessProbe | None = LivenessProbe.of(MLFLOW_LIVENESS)
    # how the supervisor probes MLflow's readiness (its registry call); default: no delay
    mlflow_readiness: ReadinessProbe = ReadinessProbe()
    # alert name -> a change to that alert in the shipped rules (empty: the file as shipped)
    alert_rules_patch: dict[str, AlertRulePatch] = Field(default_factory=dict)

    @property
    def boot_allowance_seconds(self) -> float:
        """Extra time a boot may take beyond the usual: MLflow's readiness delay (every MLflow
        pod waits it out before the stack can be ready)."""
        return self.mlflow_readiness.initial_delay_seconds

    def swappable_to(self, other: StackConfig) -> bool:
        """True if a running stack can take `other` in place: new recommender pods, MLflow's
        probes and the alert rules applied live; everything else needs a restart."""
        keep = set(type(self).model_fields) - RECO_FIELDS - LIVE_FIELDS
        return self.model_dump(include=keep) == other.model_dump(include=keep)

    def recommender_differs(self, other: StackConfig) -> bool:
        """True if `other` needs new recommender pods (its name aside)."""
        fields = set(RECO_FIELDS) - {"name"}
        return self.model_dump(include=fields) != other.model_dump(include=fields)

    @classmethod
    def load(cls, path: Path) -> StackConfig:
        """Read a profile from JSON or YAML; errors name the file and the key."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise StackError(f"cannot read stack profile {path}: {exc}") from exc
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise StackError(f"stack profile {path} is not valid JSON/YAML: {exc}") from exc
        try:
            return cls.model_validate(data or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise StackError(f"stack profile {path}: key {where!r}: {first['msg']}") from exc


DEFAULT_PROFILE = "default"


def shipped_profile_names() -> list[str]:
    """Names a running stack can switch to: "default" and the stems of the shipped files."""
    return sorted({DEFAULT_PROFILE, *(path.stem for path in PROFILES_DIR.glob("*.yml"))})


def shipped_profile(name: str) -> StackConfig:
    """The shipped profile called `name` (`NotFound` for any other name)."""
    path = PROFILES_DIR / f"{name}.yml"
    if name not in shipped_profile_names():  # also keeps `name` from walking out of the dir
        raise NotFound(f"unknown profile {name!r}; shipped: {shipped_profile_names()}")
    return StackConfig.load(path) if path.is_file() else StackConfig()


def shipped_name_of(config: StackConfig) -> str | None:
    """The name of the shipped profile equal to `config`, None if it is not a shipped one."""
    for name in shipped_profile_names():
        if shipped_profile(name) == config:
            return name
    return None
