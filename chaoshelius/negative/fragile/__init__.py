"""Known-fragile recommender variants (uvicorn app factories) for negative controls only.

Each wraps the real app (`helius_reco.main.create_app`) and adds **one** mistake that real
services make, most of them subtle (a small error rate, one pod lying, a slower path), so that
each check of the catalogue is shown to catch a plausible defect, not only a total outage.
They live outside the service package, so nothing here can ship by accident.

Run with `uvicorn chaoshelius.negative.fragile:<name> --factory`; the stack profiles in
`profiles/` do this through `reco_app`. The catalogue (`controls.yml`) says which experiment
and which probe must catch each one. The variants live in modules by theme (`outage`,
`fallback`, `latency`, `recovery`, `startup`, `registry`, `memory`); every one is re-exported
here, so a profile names it by `chaoshelius.negative.fragile:<name>` whatever its module.
"""

from chaoshelius.negative.fragile.fallback import (
    FALLBACK_ERROR_EVERY,
    LYING_ZONE,
    fallback_clears_early_app,
    fallback_errors_app,
    fallback_flap_guard_app,
    lying_pod_app,
    one_pod_fallback_errors_app,
    one_pod_fallback_stalls_app,
    slow_fallback_app,
    swallowed_errors_app,
)
from chaoshelius.negative.fragile.latency import (
    refresh_blocks_requests_app,
    slow_after_swap_app,
    slow_everywhere_app,
)
from chaoshelius.negative.fragile.memory import page_tokens_app
from chaoshelius.negative.fragile.outage import hot_path_mlflow_app, no_fallback_app
from chaoshelius.negative.fragile.recovery import (
    refresh_stops_after_recovery_app,
    slow_recovery_app,
)
from chaoshelius.negative.fragile.registry import (
    alias_cached_app,
    baseline_on_failure_app,
    baseline_until_alias_moves_app,
    ignores_cache_app,
    label_only_app,
)
from chaoshelius.negative.fragile.startup import (
    cold_first_requests_app,
    health_needs_mlflow_app,
    ready_before_warm_app,
    slow_start_app,
    startup_needs_mlflow_app,
)

__all__ = [
    "FALLBACK_ERROR_EVERY",
    "LYING_ZONE",
    "alias_cached_app",
    "baseline_on_failure_app",
    "baseline_until_alias_moves_app",
    "cold_first_requests_app",
    "fallback_clears_early_app",
    "fallback_errors_app",
    "fallback_flap_guard_app",
    "health_needs_mlflow_app",
    "hot_path_mlflow_app",
    "ignores_cache_app",
    "label_only_app",
    "lying_pod_app",
    "no_fallback_app",
    "one_pod_fallback_errors_app",
    "one_pod_fallback_stalls_app",
    "page_tokens_app",
    "ready_before_warm_app",
    "refresh_blocks_requests_app",
    "refresh_stops_after_recovery_app",
    "slow_after_swap_app",
    "slow_everywhere_app",
    "slow_fallback_app",
    "slow_recovery_app",
    "slow_start_app",
    "startup_needs_mlflow_app",
    "swallowed_errors_app",
]
