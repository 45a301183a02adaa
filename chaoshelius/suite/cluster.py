"""The suite on `target=kubernetes`: what a run resolves, and when the cluster is steady.

On a cluster the suite brings nothing up: the manifests run the system, the user's kubeconfig
and allow-lists (kube_context, kube_allowed_contexts, kube_allowed_servers: the experiments'
configuration, HELIUS_KUBE_* or --var) say where it is. Before each run the suite waits until
the cluster is steady as the driver and Prometheus see it (every recommender and MLflow pod
Ready, no harness fault held, every recommender seen out of fallback, no alert firing unless
the experiment's own steady gate checks them when its fault is due). The local suite's last
check, a prediction through the service, is skipped: the Service is inside the cluster, and
the experiments' probes judge the clients' view through the in-cluster load generator.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaoshelius.config import HarnessConfig
from chaoshelius.exceptions import HeliusError
from chaoshelius.promapi import PromAPIError, PrometheusAPI
from chaoshelius.slo.steady import fallback_reason
from chaoshelius.topology import App, Target

__all__ = [
    "PREDICTION_CHECK_SKIPPED",
    "TARGETS",
    "ResolvedRun",
    "cluster_unsteady_reason",
    "resolve_run",
]

TARGETS = tuple(t.value for t in Target)  # ("local", "kubernetes")
PROMETHEUS_KEY = "prometheus_base_url"
PREDICTION_CHECK_SKIPPED = (
    "the steady wait skips the local suite's prediction check on a cluster (the Service is "
    "inside it; the experiments' probes judge the clients through the in-cluster load)"
)


class ResolutionError(HeliusError):
    """The runs' configuration cannot be resolved (a bad --var or var file)."""


@dataclass(frozen=True)
class ResolvedRun:
    """What `chaos run <chaos_args> <experiment>` resolves for the keys the suite needs."""

    configuration: dict[str, Any]
    explicit: frozenset[str]  # keys set by --var, a var file or their environment variable

    @property
    def target(self) -> str:
        return str(self.configuration.get("target") or Target.LOCAL.value)

    @property
    def prometheus_url(self) -> str | None:
        """The Prometheus the run's probes ask; None when only the experiment's default
        (the local stack's) says where it is."""
        if PROMETHEUS_KEY not in self.explicit:
            return None
        value = self.configuration.get(PROMETHEUS_KEY)
        return str(value) if value else None

    def harness_config(self) -> HarnessConfig:
        return HarnessConfig.from_chaos(self.configuration)


def _split_chaos_args(chaos_args: Sequence[str]) -> tuple[list[str], list[str]]:
    """The `--var` and `--var-file` values of chaos_run_args' output, in order."""
    var: list[str] = []
    files: list[str] = []
    items = list(chaos_args)
    for flag, value in zip(items, items[1:], strict=False):
        if flag == "--var":
            var.append(value)
        elif flag == "--var-file":
            files.append(value)
    return var, files


def resolve_run(
    experiment: Path, chaos_args: Sequence[str], environ: Mapping[str, str] | None = None
) -> ResolvedRun:
    """The experiment's configuration as `chaos run` resolves it (chaoslib's rules: a --var or
    var-file key replaces the experiment's entry; an `env` entry reads `environ`, else its
    default), plus which keys were set rather than defaulted."""
    import json

    from chaoslib import convert_to_type, convert_vars, merge_vars

    env = os.environ if environ is None else environ
    var, files = _split_chaos_args(chaos_args)
    try:
        config_vars, _ = merge_vars(convert_vars(var), files)
        declared = json.loads(experiment.read_text(encoding="utf-8")).get("configuration") or {}
    except (ValueError, OSError) as exc:
        raise ResolutionError(f"cannot resolve the configuration of {experiment}: {exc}") from exc
    conf: dict[str, Any] = {}
    explicit: set[str] = set()
    for key, entry in declared.items():
        value = config_vars.get(key, entry)
        if key in config_vars:
            explicit.add(key)
        if isinstance(value, dict) and value.get("type") == "env":
            env_key = str(value.get("key"))
            if env_key in env:
                explicit.add(key)
            raw = env.get(env_key, value.get("default"))
            try:
                conf[key] = convert_to_type(value.get("env_var_type"), raw)
            except (TypeError, ValueError) as exc:
                raise ResolutionError(
                    f"configuration key {key!r}: {env_key}={raw!r} is not a "
                    f"{value.get('env_var_type')}"
                ) from exc
        else:
            conf[key] = value
    return ResolvedRun(conf, frozenset(explicit))


def cluster_unsteady_reason(
    driver: Any, prom: PrometheusAPI, namespace: str, alerts: bool = True
) -> str | None:
    """Why the cluster is not steady now, or None (see the module docstring). `driver` is a
    KubernetesDriver (typed loosely: the kubernetes client is imported only on that target)."""
    from chaoshelius.controls import steady_gate

    try:
        pods = {app: driver.list_pods(app) for app in (App.RECO.value, App.MLFLOW.value)}
        missing = sorted(app for app, found in pods.items() if not found)
        if missing:
            return f"no pods of {missing} in namespace {namespace!r}"
        not_ready = sorted(p.name for found in pods.values() for p in found if not p.ready)
        if not_ready:
            return f"pods not ready: {not_ready}"
        faults = driver.active_faults()
        if faults:
            return f"faults still active: {sorted(f.id for f in faults)}"
        reco = len(pods[App.RECO.value])
        out_of_fallback = fallback_reason(prom, reco)
        if out_of_fallback:
            return out_of_fallback
        if alerts:
            return steady_gate.unsteady_reason(prom, namespace)
    except (HeliusError, PromAPIError) as exc:
        return f"the cluster did not answer ({type(exc).__name__}: {exc})"
    return None
