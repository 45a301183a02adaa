"""SLO probes judged in Prometheus, most of them over this run's fault window.

Every probe returns `{"ok", "value", "threshold", "query", "description", "window", ...}`; use
the tolerance `{"type": "jsonpath", "path": "$.ok", "expect": true}`. Rules they all follow:

- **Window probes hold vacuously before the method** (no fault action called yet in this run)
  and **fail** after the method if the fault recorded no window (chaoshelius.windows).
- **No data is a failure**: a query that returns no series makes `ok` false and says so.
- **Per pod, over the whole window**: the fallback gauge is judged for every recommender pod,
  not as a `max()` where one honest pod hides a lying or unscraped one.
- **Clients are judged over the fault and its recovery** (until the load stopped, or
  `recovery_seconds` after the fault's end), with the worst short window in the verdict.
- An unreachable, erroring or hung Prometheus raises PrometheusError (HTTP timeouts on every
  call); in the after-method hypothesis that marks the run deviated, `chaos run` exits 1.

This module is the one experiments name (`"module": "chaoshelius.slo.probes"`); the probes live
by what they judge: `instant` (the state now), `clients` (what users saw), `fallback` (per pod),
`per_pod` (the recommenders' own answers, pod by pod), `recovery` (pods back and Ready),
`models` (the registry's champion served), `alerts`, `evidence` (proof the fault bit).
"""

from __future__ import annotations

from chaoshelius.slo.alerts import alert_fired
from chaoshelius.slo.clients import client_success_ratio, latency_p99_ratio
from chaoshelius.slo.evidence import counter_grew, targets_went_down
from chaoshelius.slo.fallback import (
    fallback_cleared_within,
    fallback_engaged_within,
    fallback_never_engaged,
)
from chaoshelius.slo.freshness import refresh_fresh_after_recovery
from chaoshelius.slo.instant import query, query_value
from chaoshelius.slo.memory import memory_growth_within
from chaoshelius.slo.models import models_converged_within
from chaoshelius.slo.per_pod import pods_prediction_slo
from chaoshelius.slo.recovery import replicas_recovered_within
from chaoshelius.slo.served import (
    no_pod_downgraded,
    promoted_model_served_within,
    replacement_served_cache,
)

__all__ = [
    "alert_fired",
    "client_success_ratio",
    "counter_grew",
    "fallback_cleared_within",
    "fallback_engaged_within",
    "fallback_never_engaged",
    "latency_p99_ratio",
    "memory_growth_within",
    "models_converged_within",
    "no_pod_downgraded",
    "pods_prediction_slo",
    "promoted_model_served_within",
    "query",
    "query_value",
    "refresh_fresh_after_recovery",
    "replacement_served_cache",
    "replicas_recovered_within",
    "targets_went_down",
]
