"""The harness's view of a Chaos Toolkit `configuration` block.

Every activity reads its settings through `HarnessConfig.from_chaos(configuration)`, so the key
names, their defaults and their validation live in one place. Defaults point at the embedded
local stack on its default base port, so `chaos run experiments/x.json` needs no flag.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chaoshelius.exceptions import ConfigurationError
from chaoshelius.stack.ports import DEFAULT_BASE_PORT, StackPorts
from chaoshelius.topology import NAMESPACE, App

_PORTS = StackPorts(DEFAULT_BASE_PORT)


class HarnessConfig(BaseModel):
    """Typed configuration. Chaos Toolkit keys are the field names below."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    target: Literal["local", "kubernetes"] = "local"
    # local stack endpoints
    helius_control_url: str = f"http://127.0.0.1:{_PORTS.control}"
    # the local stack's state directory: its control token is read from <dir>/control.token
    # (HELIUS_CONTROL_TOKEN, when set, wins; see chaoshelius/stack/auth.py)
    helius_stack_dir: Path = Path(".helius") / "stack"
    prometheus_base_url: str = f"http://127.0.0.1:{_PORTS.prometheus}"
    helius_reco_url: str = f"http://127.0.0.1:{_PORTS.reco_service}"
    helius_loadgen_metrics_port: int = _PORTS.loadgen
    # the MLflow tracking server (the registry): probes read the champion alias from it, the
    # model actions promote through it (local: the stack's MLflow service proxy)
    helius_mlflow_url: str = f"http://127.0.0.1:{_PORTS.mlflow_service}"
    # where a run keeps what it measured (fault windows, Locust CSVs, the report)
    helius_run_dir: Path = Path("reports/runs/latest")
    # HTTP timeout for every call the harness makes (control API, Prometheus)
    helius_http_timeout_seconds: float = Field(default=5.0, gt=0)
    # kubernetes target: refuse to act outside these
    kube_context: str | None = None
    kube_allowed_contexts: list[str] = Field(default_factory=list)
    kube_namespace: str = NAMESPACE
    kube_allowed_namespaces: list[str] = Field(default_factory=lambda: [NAMESPACE])
    # kubernetes target: context name -> the identity of its API server, either the server URL
    # exactly as the kubeconfig writes it or "sha256:<hex>" of its CA certificate (DER). A
    # context without a pin is refused: a name alone can point at any cluster.
    kube_allowed_servers: dict[str, str] = Field(default_factory=dict)
    # kubernetes target: a zone drain evicts the pods of `kube_namespace` only, unless this is on
    # (then every namespace's pods on the zone's nodes, like `kubectl drain`)
    kube_drain_all_namespaces: bool = False
    # kubernetes target: app label -> Deployment name (scaling), and the RDS side of the
    # mlflow-rds edge: the CIDRs of the RDS subnet group (one per zone it spans; a string is
    # one CIDR, an environment variable "cidr,cidr"); empty: the pods labelled app=postgres
    kube_deployments: dict[str, str] = Field(
        default_factory=lambda: {App.RECO.value: App.RECO.value, App.MLFLOW.value: "mlflow"}
    )
    kube_rds_cidr: list[str] = Field(default_factory=list)

    @field_validator("kube_context", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """An empty string (an unset environment variable's default) means: not set."""
        return None if value == "" else value

    @field_validator("kube_rds_cidr", mode="before")
    @classmethod
    def _cidr_list(cls, value: object) -> object:
        """One CIDR, "cidr,cidr" (an environment variable) or a list; None or "" is none."""
        if value is None:
            return []
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("kube_rds_cidr")
    @classmethod
    def _valid_cidrs(cls, value: list[str]) -> list[str]:
        """Each entry an IPv4 or IPv6 network (host bits must be zero, as Kubernetes wants)."""
        for cidr in value:
            try:
                ipaddress.ip_network(cidr)
            except ValueError as exc:
                raise ValueError(
                    f"{cidr!r} is not a CIDR such as 10.0.64.0/20 ({exc}); list each subnet "
                    "of the RDS subnet group"
                ) from None
        return value

    @field_validator("kube_allowed_contexts", "kube_allowed_namespaces", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        """Allow a comma-separated string (an environment variable) for the allow-lists."""
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("kube_allowed_servers", mode="before")
    @classmethod
    def _split_pairs(cls, value: object) -> object:
        """Allow "context=pin,context=pin" (an environment variable) for the server pins."""
        if isinstance(value, str):
            pairs = [item.strip() for item in value.split(",") if item.strip()]
            if any("=" not in pair for pair in pairs):
                raise ValueError("expected context=server-url-or-sha256:fingerprint pairs")
            return dict(pair.split("=", 1) for pair in pairs)
        return value

    @classmethod
    def from_chaos(cls, configuration: dict[str, Any] | None) -> HarnessConfig:
        """Build from Chaos Toolkit's (already resolved) configuration mapping."""
        try:
            return cls.model_validate(dict(configuration or {}))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigurationError(
                f"configuration key {where!r}: {first['msg']} (got {first.get('input')!r})"
            ) from exc
