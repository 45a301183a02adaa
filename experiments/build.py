"""Write the experiment catalogue (experiments/*.json) from one description.

The JSON files are what users read, edit and run (`chaos run experiments/x.json`); this script
describes each experiment with the shared blocks of chaoshelius/catalogue/ (configuration keys,
the before/after checks and client SLOs, load, rollbacks, controls: `blocks.py`; durations per
target: `timing.py`), so a fix lands in every experiment at once. tests/experiments checks that
the committed files are exactly what this script writes.

Every step is made from the harness's own activity function (`slo.client_success_ratio`, not
a module and a name typed as strings) and its arguments are bound to the function's signature
while the catalogue is generated (chaoshelius/catalogue/steps.py): a misspelt function or
argument fails here, naming it, not in the middle of a run. Apps, edges, fault kinds, path
modes and metric names come from chaoshelius.topology, configuration keys from HarnessConfig.

    python experiments/build.py           # rewrite experiments/*.json
    python experiments/build.py --check   # exit 1 if a file differs (CI)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from chaoshelius.catalogue.blocks import (
    DEFAULT_ZONE,
    LOST_IN_FLIGHT,
    MLFLOW,
    MODEL_SWAP,
    RECO,
    RESTARTS,
    ZONE,
    alert,
    await_ready,
    clients,
    converged,
    cut,
    experiment,
    fallback_cleared,
    fallback_engaged,
    fresh_after_recovery,
    kill_one,
    no_fallback,
    no_restart,
    recovered,
    replaced,
    restore_path,
    restore_scale,
    scale_to_zero,
    uncordon,
    went_down,
    window,
)
from chaoshelius.catalogue.describe import seconds
from chaoshelius.catalogue.steps import CatalogueError, Json, action, probe
from chaoshelius.catalogue.timing import PROFILES, SETTLE, TTL, t
from chaoshelius.model import actions as model
from chaoshelius.network import probes as network_probes
from chaoshelius.slo import probes as slo
from chaoshelius.topology import (
    EDGE_MLFLOW_RDS,
    EDGE_RECO_MLFLOW,
    RECO_LIVENESS,
    REFRESH_FAILURES,
    FaultKind,
    PathMode,
)
from chaoshelius.zones import actions as zones

HERE = Path(__file__).resolve().parent
# The numbers a description states are rendered from the values its steps use (`seconds` names
# a timing key and its local default); the thresholds its probes apply are appended to it
# (chaoshelius/catalogue/describe.py). Never type a number here that a step also has.
IN_ZONE = f"in a zone (helius_zone, default {DEFAULT_ZONE})"
LIVENESS_BUDGET = (
    f"{RECO_LIVENESS.failure_threshold} x {RECO_LIVENESS.period_seconds:g} s + "
    f"{RECO_LIVENESS.timeout_seconds:g} s"
)
SLOW_MLFLOW_MS = 800  # mlflow-latency's delay per chunk on the reco-mlflow path


def hold(key: str) -> str:
    """How long a fault is held, as its step's pause: '40 s (key, local default)'."""
    return seconds(t(key))


# ---------------------------------------------------------------- the catalogue
def mlflow_pod_kill() -> Json:
    w = window(FaultKind.POD_KILL, MLFLOW)
    return experiment(
        "Killing one MLflow pod is absorbed by HA: no fallback",
        f"Kill the MLflow pod {IN_ZONE} under load. The MLflow service keeps two replicas, "
        "so the recommenders keep refreshing from the registry and never enter fallback "
        "(judged per pod); the pod is replaced under a new name. Fault window: kill -> "
        "replacement ready.",
        ["mlflow", "pod-kill", "ha"],
        {"availability": "high", "reliability": "high"},
        "MLflow HA holds: one replica lost, the recommenders never fall back",
        [
            replaced("killed-mlflow-pod-was-replaced", MLFLOW),
            no_fallback("no-fallback-during-the-kill", w),
            *clients(w, latency=RESTARTS),
            recovered("mlflow-replicas-back", MLFLOW, "helius_mlflow_back_within_seconds", w),
            no_restart(RECO, w),
        ],
        [
            kill_one("kill-one-mlflow-pod", MLFLOW),
            await_ready("await-mlflow-replacement", MLFLOW),
        ],
    )


def mlflow_outage() -> Json:
    w = window(FaultKind.SCALE, MLFLOW)
    return experiment(
        "Full MLflow outage, longer than the liveness budget: fallback on every pod, "
        "predictions continue, nobody restarts, fallback clears",
        f"Scale MLflow to 0 replicas for {hold('helius_outage_hold_seconds')} under load, "
        f"longer than the recommender's liveness budget ({LIVENESS_BUDGET}), then restore. "
        "Every recommender keeps answering from its last known good model, reports it "
        "(reco_engine_in_fallback_mode=1 on every pod until MLflow is back, alert "
        "RecoEngineInFallback), is not restarted, and returns to 0 and to the registry's model "
        "by itself once MLflow is back (MLflow's own cold start is measured, not judged).",
        ["mlflow", "outage", "fallback", "liveness"],
        {"availability": "high", "reliability": "high", "observability": "high"},
        "Predictions survive a full MLflow outage and the fallback clears by itself",
        [
            went_down("mlflow-was-really-down", MLFLOW, w),
            fallback_engaged(w, after_app_back=MLFLOW),
            *clients(w, latency=RESTARTS, success_name="predictions-continued"),
            alert("fallback-alert-fired", "RecoEngineInFallback", w),
            fallback_cleared(w, after_app_back=MLFLOW),
            fresh_after_recovery(w, after_app_back=MLFLOW),
            converged("every-pod-on-the-registry-model", "helius_mlflow_back_within_seconds", w),
            no_restart(RECO, w),
            # 0 baseline answers after a good model: healthy runs gave 0 (2026-12-07); one such
            # answer is the defect itself, there is no noise to allow for
            probe("no-pod-downgraded-to-baseline", slo.no_pod_downgraded, **w),
        ],
        [
            scale_to_zero(MLFLOW, "helius_outage_hold_seconds"),
            restore_scale(MLFLOW),
            await_ready("await-mlflow-back", MLFLOW),
        ],
    )


def rds_path_cut() -> Json:
    w = window(FaultKind.PATH, EDGE_MLFLOW_RDS)
    return experiment(
        "MLflow -> RDS path blackholed: fallback, alert, MLflow recovers without restart",
        "Blackhole the mlflow-rds path (connections hang, like a NetworkPolicy drop) for "
        f"{hold('helius_cut_hold_seconds')} under load, then restore. MLflow stays up but "
        "cannot answer registry calls; the recommenders' refreshes fail (proof), every one of "
        "them enters fallback, "
        "MLflowDegraded and RecoEngineInFallback fire, clients keep their answers at their "
        "usual latency, and once the path is back MLflow serves again with the same pods "
        "and nobody was restarted.",
        ["rds", "network", "fallback"],
        {"availability": "high", "reliability": "high", "observability": "high"},
        "Losing the registry database degrades to fallback, is alerted, and heals by itself",
        [
            probe(
                "refreshes-really-failed",
                slo.counter_grew,
                selector=REFRESH_FAILURES + '{reason!="disabled"}',
                min_increase=1,
                **w,
            ),
            fallback_engaged(w),
            *clients(w, success_name="predictions-continued"),
            alert("mlflow-degraded-alert-fired", "MLflowDegraded", w),
            alert("fallback-alert-fired", "RecoEngineInFallback", w),
            fallback_cleared(w),
            fresh_after_recovery(w),
            probe(
                "mlflow-recovered-without-restart",
                network_probes.source_pods_unchanged,
                edge=EDGE_MLFLOW_RDS,
            ),
            no_restart(RECO, w),
            probe("no-pod-downgraded-to-baseline", slo.no_pod_downgraded, **w),
        ],
        [
            cut(
                f"blackhole-{EDGE_MLFLOW_RDS}",
                EDGE_MLFLOW_RDS,
                PathMode.BLACKHOLE,
                "helius_cut_hold_seconds",
            ),
            restore_path(EDGE_MLFLOW_RDS, after=SETTLE),
        ],
    )


def az_drain() -> Json:
    zone = ZONE
    w = window(FaultKind.DRAIN, zone)
    return experiment(
        f"Draining a zone ({DEFAULT_ZONE} by default): its pods go, no outage, no fallback",
        f"Drain a zone (helius_zone / HELIUS_ZONE, default {DEFAULT_ZONE}; every pod in it "
        f"stops and stays down) for {hold('helius_drain_hold_seconds')} under load, then "
        "uncordon. The recommender and MLflow replicas of the other zones carry the load: "
        "clients see no outage and no slowdown beyond the SLO, no recommender falls back, and "
        "the zone's pods come back.",
        ["zone", "drain", "capacity"],
        {"availability": "high", "reliability": "high"},
        "Losing a whole zone costs capacity, not availability",
        [
            went_down("drained-zone-recommenders-were-down", RECO, w, zone=zone),
            # at the suite's stated load (helius_load_rate, 250 requests/s), not a share of a
            # capacity measured at run time: at 450 requests/s (about half of what this 2-core
            # machine sustains, load generator included) the p99 *before* the fault read 433-
            # 456 ms in healthy runs, past any SLO. Availability must hold, the tail may not
            # pass the restart class (the zone's pods restart on the same two cores) nor either
            # the service's SLO.
            # At the stated 250 req/s (not half a measured capacity, 439-604 req/s, where the
            # median once read x7.9) ten healthy runs of 2026-12-07 put p50 at x1.06-x1.41
            # (2.9 ms at most): the median keeps x2 + 5 ms like every experiment.
            *clients(w, latency=RESTARTS),
            no_fallback("no-fallback", w),
            recovered(
                "recommenders-back-in-every-zone",
                RECO,
                "helius_zone_back_within_seconds",
                w,
                per_zone=True,
            ),
        ],
        [
            action(
                "drain-zone",
                zones.drain_zone,
                after=t("helius_drain_hold_seconds"),
                zone=zone,
                ttl_seconds=TTL,
            ),
            uncordon(zone),
            await_ready("await-recommenders-back", RECO, after=None, per_zone=True),
            await_ready("await-mlflow-back", MLFLOW),
        ],
    )


def mlflow_latency() -> Json:
    w = window(FaultKind.PATH, EDGE_RECO_MLFLOW)
    return experiment(
        "Slow MLflow: the recommenders' hot path latency is unaffected",
        f"Add {SLOW_MLFLOW_MS} ms of latency on the reco-mlflow path for "
        f"{hold('helius_latency_hold_seconds')} under load, then restore. Requests never wait "
        "for MLflow, so the client p99 and p50 over the fault and its recovery stay within the "
        "latency SLO below (against the same before the fault, plus measured noise), clients "
        "see no errors and no recommender is restarted.",
        ["mlflow", "latency", "hot-path"],
        {"performance": "high", "reliability": "medium"},
        "A slow registry never slows predictions",
        [*clients(w), no_restart(RECO, w)],
        [
            cut(
                f"slow-{EDGE_RECO_MLFLOW}",
                EDGE_RECO_MLFLOW,
                PathMode.LATENCY,
                "helius_latency_hold_seconds",
                latency_ms=SLOW_MLFLOW_MS,
            ),
            restore_path(EDGE_RECO_MLFLOW, after=SETTLE),
        ],
    )


def reco_pod_kill() -> Json:
    w = window(FaultKind.POD_KILL, RECO)
    return experiment(
        "Killing one recommender pod: clients barely notice",
        f"Kill the recommender pod {IN_ZONE} under load. The service proxy routes to the "
        "ready replicas; the pod is replaced under a new name and back in service (bound "
        "below). The killed pod's in-flight requests are lost, as on a cluster. Fault window: "
        "kill -> replacement ready.",
        ["recommender", "pod-kill"],
        {"availability": "high"},
        "Losing one recommender replica is invisible to clients",
        [
            replaced("killed-recommender-was-replaced", RECO),
            *clients(w, success=LOST_IN_FLIGHT, latency=RESTARTS),
            recovered("recommenders-back", RECO, "helius_reco_back_within_seconds", w),
        ],
        [
            kill_one("kill-one-recommender", RECO),
            await_ready("await-recommender-replacement", RECO, "helius_reco_await_seconds"),
        ],
    )


def reco_cold_start_during_outage() -> Json:
    outage = window(FaultKind.SCALE, MLFLOW)
    kill = window(FaultKind.POD_KILL, RECO)
    return experiment(
        "A recommender replaced during an MLflow outage starts and serves (always starts)",
        "Scale MLflow to 0 under load, then, "
        f"{hold('helius_outage_before_kill_seconds')} later, kill the recommender {IN_ZONE} "
        "while MLflow is still down. Its replacement must start without the registry (from its "
        "on-disk cache, or the shipped baseline), report fallback, and take traffic (bound "
        "below); MLflow is restored once the replacement is Ready and has served for "
        f"{hold('helius_replacement_hold_seconds')}, then every pod clears.",
        ["recommender", "cold-start", "mlflow", "outage"],
        {"availability": "high", "reliability": "high"},
        "The recommender always starts, even when the registry is gone",
        [
            went_down("mlflow-was-really-down", MLFLOW, outage),
            recovered(
                "replacement-serving-during-outage",
                RECO,
                "helius_cold_start_within_seconds",
                kill,
            ),
            replaced("killed-recommender-was-replaced", RECO),
            # healthy: 824 answers, every one from cache with the last good digest (2026-12-07);
            # the bound is "all of them", at least one
            probe("replacement-served-its-cache", slo.replacement_served_cache, app=RECO),
            fallback_engaged(outage, after_app_back=MLFLOW),
            *clients(outage, success=LOST_IN_FLIGHT, latency=RESTARTS),
            fallback_cleared(outage, after_app_back=MLFLOW),
            fresh_after_recovery(outage, after_app_back=MLFLOW),
        ],
        [
            scale_to_zero(MLFLOW, "helius_outage_before_kill_seconds"),
            kill_one("kill-one-recommender", RECO),
            await_ready(
                "await-recommender-replacement",
                RECO,
                "helius_cold_start_await_seconds",
                after=t("helius_replacement_hold_seconds"),
            ),
            restore_scale(MLFLOW),
            await_ready("await-mlflow-back", MLFLOW),
        ],
    )


def model_promoted_during_partition() -> Json:
    w = window(FaultKind.PATH, EDGE_RECO_MLFLOW)
    return experiment(
        "A model promoted while the recommenders cannot reach MLflow reaches every pod after",
        "Blackhole the reco-mlflow path under load; "
        f"{hold('helius_partition_before_promotion_seconds')} into the cut, promote a new "
        "version of the model in MLflow (reco@champion moves on); "
        f"{hold('helius_partition_hold_seconds')} later restore the path. Every recommender "
        "falls back during the cut, keeps serving, and converges on the promoted version after "
        "the path's return (bound below): no pod is left on a stale model.",
        ["mlflow", "network", "model", "staleness"],
        {"reliability": "high", "observability": "medium"},
        "A promotion during a partition converges on every pod",
        [
            fallback_engaged(w),
            *clients(w, latency=MODEL_SWAP),
            fallback_cleared(w),
            fresh_after_recovery(w),
            converged("every-pod-on-the-promoted-model", "helius_clear_within_seconds", w),
            # healthy: every pod on the promoted digest 8.4 s after the path's return (loaded
            # machine, 2026-12-07), as the label said (8.4 s): 20 s is a 2.4x margin
            probe(
                "clients-served-the-promoted-model",
                slo.promoted_model_served_within,
                seconds=t("helius_clear_within_seconds"),
                **w,
            ),
        ],
        [
            cut(
                f"cut-{EDGE_RECO_MLFLOW}",
                EDGE_RECO_MLFLOW,
                PathMode.BLACKHOLE,
                "helius_partition_before_promotion_seconds",
            ),
            action(
                "promote-new-model-version",
                model.promote_model,
                after=t("helius_partition_hold_seconds"),
            ),
            restore_path(EDGE_RECO_MLFLOW, after=SETTLE),
        ],
    )


CATALOGUE: dict[str, Callable[[], Json]] = {
    "mlflow-pod-kill": mlflow_pod_kill,
    "mlflow-outage": mlflow_outage,
    "rds-path-cut": rds_path_cut,
    "az-drain": az_drain,
    "mlflow-latency": mlflow_latency,
    "reco-pod-kill": reco_pod_kill,
    "reco-cold-start-during-outage": reco_cold_start_during_outage,
    "model-promoted-during-partition": model_promoted_during_partition,
}


def render(name: str) -> str:
    """One experiment's file; a step that would fail when run fails here, named."""
    try:
        return json.dumps(CATALOGUE[name](), indent=2) + "\n"
    except (CatalogueError, AttributeError) as exc:  # a misspelt argument, or function
        raise CatalogueError(f"{name}: {exc}") from exc


def files() -> Iterator[tuple[str, str]]:
    """Every generated file (its path below experiments/) and its text."""
    for name in CATALOGUE:
        yield f"{name}.json", render(name)
    for profile, timing in PROFILES.items():
        yield f"profiles/{profile}.json", json.dumps({"configuration": timing}, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file differs")
    parser.add_argument("--dir", type=Path, default=HERE)
    args = parser.parse_args(argv)
    stale = []
    try:
        written = dict(files())
    except CatalogueError as exc:
        print(f"experiments/build.py: {exc}", file=sys.stderr)
        return 1
    for name, text in written.items():
        path = args.dir / name
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        if args.check:
            stale.append(name)
        else:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    extra = sorted(p.name for p in args.dir.glob("*.json") if p.stem not in CATALOGUE)
    if args.check and (stale or extra):
        print(
            f"experiments out of date: {stale + extra}; run python experiments/build.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
