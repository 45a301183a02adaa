"""Verdicts on target=kubernetes: every experiment of the catalogue through the real `chaos`
CLI, probes and all (no `--dry`), against the fake API server serving the kind overlay, with
the in-cluster load and a real Prometheus whose series follow the fake cluster.

No kube-apiserver, kubelet or container can run here (k8s_fake_api.py), so this is the only
way to see the cluster target *judge*: the pods' behaviour is simulated
(k8s_fake_metrics.SimulatedSystem: refreshes through the NetworkPolicies and MLflow's
endpoints, the fallback gauge, refresh failures and last successful refresh, model versions,
each pod's own request counter and latency histogram and its resident memory, the load
generator's client series while its Deployment runs), a real `prometheus` scrapes it with
the manifests' relabelling and evaluates the real alert rules, and every probe of the
experiments asks it, or the fake API server, what happened. MLflow's REST API is a stub
(mlflow_stub.py) whose alias the promotion moves.

What it proves, per experiment:

- the healthy simulated system passes every hypothesis probe on the cluster target: the
  probes find their series under the labels the kubernetes_sd relabelling gives, the fault
  windows line up with what Prometheus saw, the alerts fire from the shipped rules, and
  nothing is a false alarm;
- four plausible defects, the twins of the local stack's negative controls
  (chaoshelius/negative/controls.yml: `lying-pod`, one zone's recommender never reporting
  fallback, and `fallback-errors`, 2.5 % of predictions failing in fallback, in rds-path-cut;
  `health-needs-mlflow`, a recommender liveness endpoint that needs MLflow, in mlflow-outage;
  `mlflow-liveness-is-readiness`, an MLflow liveness probe that needs the database, in
  rds-path-cut), make their experiment deviate on exactly the probes the local stack deviates
  on for them. The last two are restarts in place (the kubelet keeps the pod's name; the
  simulation runs the manifests' liveness probes, k8s_fake_metrics), which the local stack
  shows as a renamed pod: only restart counts reveal them on a cluster.

The experiments' timing keys are shortened through the environment (as a user's --var-file
would) to the values in `TIMING`, each derived below from what it must cover; Prometheus
scrapes every second. The runs go `PARALLEL` at a time (each with its own cluster, exporter
and Prometheus: the probes do not filter by run) so the catalogue fits in about three
minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.k8s_fake_api import FakeKubeAPI, isolate_client, serve, write_kubeconfig
from support.k8s_fake_metrics import Misbehaviour, SimulatedSystem, scraped
from support.mlflow_stub import Registry, serve_registry

from chaoshelius.config import HarnessConfig
from chaoshelius.drivers import get_driver
from chaoshelius.negative.fragile import FALLBACK_ERROR_EVERY, LYING_ZONE
from chaoshelius.topology import App

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CONTROLS = ROOT / "chaoshelius" / "negative" / "controls.yml"
PROFILES = ROOT / "chaoshelius" / "negative" / "profiles"
NS = "helius"
CONTEXT = "kind-helius"
PARALLEL = 5
# Cold starts on the simulated cluster (creation to Ready: container start, the startup and
# readiness probes). The recommender's and MLflow's are longer than it takes Prometheus to
# discover and scrape a new pod (a 5 s discovery round + a 1 s scrape), as on a cluster: a
# new MLflow pod is seen up before the recommenders reach it, and a rolling restart's new pod
# is scraped before the old one goes. Faster, these probes would judge Prometheus's service
# discovery lag instead (see the module docstring of k8s_fake_metrics).
COLD_START_SECONDS = {App.RECO.value: 8.0, App.MLFLOW.value: 8.0}
READY_SECONDS = 0.5  # the other pods (the load generator's)
# A container the kubelet restarts in place (a failed liveness probe) keeps its node, image,
# IP and scrape target: no scheduling and no discovery round, only the process's start and
# its startup probe, about 10 s on a cluster, times the simulation's probe_time_scale (0.2).
RESTART_SECONDS = 2.0
# Every timing key of the catalogue, shortened for this simulated cluster (1 s scrapes, 1 s
# refreshes, target changes reaching Prometheus within ~6 s, alert rules `for: 10s`):
TIMING = {
    # the load generator's target reaches Prometheus (<= 6 s), then a full baseline
    "helius_warm_up_seconds": 12,
    "helius_baseline_seconds": 5,
    "helius_short_window_seconds": 3,
    # outages long enough for RecoEngineInFallback / MLflowDegraded (`for: 10s`) to fire
    "helius_outage_hold_seconds": 12,
    "helius_cut_hold_seconds": 16,
    "helius_latency_hold_seconds": 5,
    "helius_partition_hold_seconds": 4,
    "helius_drain_hold_seconds": 6,
    "helius_fallback_within_seconds": 8,
    # MLflow back in Prometheus (SD) and a refresh later
    "helius_clear_within_seconds": 10,
    "helius_alert_within_seconds": 25,
    "helius_refresh_grace_seconds": 3,
    "helius_fault_ttl_seconds": 120,
    # samples after every pod cleared (a refresh, a scrape, an SD round)
    "helius_settle_seconds": 6,
}


@dataclass(frozen=True)
class Case:
    """One run: an experiment against a healthy or a plausibly broken simulated system."""

    experiment: str
    control: str | None = None  # the local negative control whose defect is simulated
    misbehaviour: Misbehaviour | None = None

    @property
    def id(self) -> str:
        return self.experiment + (f"[{self.control}]" if self.control else "")


# the local negative controls this simulation can reproduce, by profile name
SIMULATED_CONTROLS = {
    "lying-pod": Misbehaviour(lying_zone=LYING_ZONE),
    "fallback-errors": Misbehaviour(fallback_error_share=1 / FALLBACK_ERROR_EVERY),
    # restarts in place: the kubelet keeps the pod's name, only restartCount tells
    "health-needs-mlflow": Misbehaviour(health_needs_mlflow=True),
    "mlflow-liveness-is-readiness": Misbehaviour(
        mlflow_liveness=yaml.safe_load((PROFILES / "mlflow-liveness-is-readiness.yml").read_text())[
            "mlflow_liveness"
        ]
    ),
}


# What a defect costs on a cluster beyond the local stack's verdict. A recommender whose
# liveness needs MLflow crash-loops there for as long as MLflow is gone (the cluster profile's
# outage is twice the liveness budget, and MLflow's cold start comes on top; this test keeps
# that ratio): each restart in place takes the pod out of the Service (clients see errors when
# the three restarts overlap) and out of Prometheus (the fallback alert's `for:` starts over).
# Locally the outage is 1.3 budgets and a forked restart takes 1-3 s: one restart, unseen by
# clients. These probes may deviate too; the named ones must.
#
# And what a defect costs on the probes the catalogue judges per pod, whichever the target:
# `fallback-errors` fails 2.5 % of every pod's predictions while it is in fallback, which is
# over recommenders-per-pod-slo's 1 % per pod whenever fallback lasts 40 % of the fault and
# its recovery (the RDS cut's hold against its recovery here: about 60 %). The aggregate
# (predictions-continued) is the control's named probe; the per-pod one may see it too.
ALSO_ON_A_CLUSTER = {
    "health-needs-mlflow": {"predictions-continued", "fallback-alert-fired"},
    "fallback-errors": {"recommenders-per-pod-slo"},
}


def _controls() -> dict[str, dict[str, Any]]:
    entries = yaml.safe_load(CONTROLS.read_text())
    return {e["profile"]: e for e in entries if e["profile"] in SIMULATED_CONTROLS}


# Defects with no local control yet, judged here only: (experiment, misbehaviour, the probes
# that must deviate, exactly). `ready-needs-refresh` is issue 19's seeded defect: a replacement
# started during an MLflow outage answers /metrics (up) but is never Ready while the outage
# lasts; its await times out, which Chaos Toolkit only logs, and it answers nothing before
# MLflow is back, so replacement-served-its-cache (on a cluster: the replacement answered
# during the outage, from its cache or the baseline) deviates too: the defect itself.
CLUSTER_DEFECTS = {
    "ready-needs-refresh": (
        "reco-cold-start-during-outage",
        Misbehaviour(ready_needs_refresh=True),
        {
            "replacement-serving-during-outage",
            "recommender-replicas-ready",
            "replacement-served-its-cache",
        },
    )
}

CASES = (
    [Case(p.stem) for p in sorted((ROOT / "experiments").glob("*.json"))]
    + [
        Case(entry["experiment"], profile, SIMULATED_CONTROLS[profile])
        for profile, entry in sorted(_controls().items())
    ]
    + [
        Case(experiment, name, misbehaviour)
        for name, (experiment, misbehaviour, _) in sorted(CLUSTER_DEFECTS.items())
    ]
)


@dataclass
class Outcome:
    journal: dict[str, Any]
    exit_code: int
    seconds: float
    output: str

    def failing_probes(self) -> set[str]:
        after = (self.journal.get("steady_states") or {}).get("after") or {}
        return {p["activity"]["name"] for p in after.get("probes", []) if not p["tolerance_met"]}

    def why(self) -> dict[str, Any]:
        after = (self.journal.get("steady_states") or {}).get("after") or {}
        return {
            p["activity"]["name"]: (p.get("output") or {}).get("description", p.get("exception"))
            for p in after.get("probes", [])
            if not p["tolerance_met"]
        } | {"status": self.journal.get("status"), "output": self.output[-1500:]}


def _run(case: Case, workdir: Path) -> Outcome:
    chaos = shutil.which("chaos") or str(Path(sys.executable).with_name("chaos"))
    workdir.mkdir(parents=True)
    cluster = FakeKubeAPI.from_overlay(grace_seconds=0.2, ready_seconds=READY_SECONDS)
    cluster.ready_seconds_by_app = dict(COLD_START_SECONDS)
    cluster.restart_seconds = RESTART_SECONDS
    cluster.readiness_gated = True  # Ready when the simulated readiness probe passes
    cluster.chaos_mesh = True  # mlflow-latency's NetworkChaos
    server, url = serve(cluster)
    started = time.monotonic()
    try:
        with (
            serve_registry() as (registry, mlflow_url),
            SimulatedSystem(
                cluster, registry, workdir / "targets.json", misbehaviour=case.misbehaviour
            ).serve() as system,
            scraped(workdir, system) as prometheus_url,
        ):
            kubeconfig = write_kubeconfig(workdir / "kubeconfig", {CONTEXT: url}, CONTEXT)
            env = {
                **os.environ,
                "KUBECONFIG": str(kubeconfig),
                "HELIUS_TARGET": "kubernetes",
                "HELIUS_KUBE_CONTEXT": CONTEXT,
                "HELIUS_KUBE_ALLOWED_CONTEXTS": CONTEXT,
                "HELIUS_KUBE_ALLOWED_SERVERS": f"{CONTEXT}={url}",
                "HELIUS_PROMETHEUS_URL": prometheus_url,
                "HELIUS_MLFLOW_URL": mlflow_url,
                "HELIUS_RUN_DIR": str(workdir / "run"),
                "HELIUS_LOAD_RATE": "100",
                **{key.upper(): str(value) for key, value in TIMING.items()},
            }
            for name in ("KUBERNETES_CONTEXT", "KUBERNETES_HOST", "CHAOSTOOLKIT_IN_POD"):
                env.pop(name, None)
            journal_path = workdir / "journal.json"
            done = subprocess.run(  # noqa: S603  argv list: the chaos CLI
                [
                    chaos,
                    "--log-file",
                    str(workdir / "chaos.log"),
                    "run",
                    "--journal-path",
                    str(journal_path),
                    str(ROOT / "experiments" / f"{case.experiment}.json"),
                ],  # fmt: skip
                env=env,
                capture_output=True,
                text=True,
                timeout=240,
                check=False,
            )
    finally:
        server.shutdown()
        server.server_close()
    return Outcome(
        json.loads(journal_path.read_text()),
        done.returncode,
        time.monotonic() - started,
        done.stdout + (workdir / "chaos.log").read_text()[-3000:],
    )


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Outcome]]:
    """Every selected case (`-k` selects), run PARALLEL at a time."""
    selected = [
        item.callspec.params["case"]
        for item in request.session.items
        if item.module is request.module
        and hasattr(item, "callspec")
        and "case" in item.callspec.params
    ]
    base = tmp_path_factory.mktemp("verdicts")
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        futures = {
            case.id: pool.submit(_run, case, base / f"run{i}") for i, case in enumerate(selected)
        }
        results = {case_id: future.result() for case_id, future in futures.items()}
    print(f"\n{len(selected)} runs in {time.monotonic() - started:.0f} s (work dirs under {base})")
    for case_id, outcome in results.items():
        print(f"  {case_id}: {outcome.journal.get('status')} in {outcome.seconds:.0f} s")
    yield results


@pytest.mark.parametrize("case", [c for c in CASES if c.control is None], ids=lambda c: c.id)
def test_the_healthy_system_passes_on_target_kubernetes(
    case: Case, outcomes: dict[str, Outcome]
) -> None:
    outcome = outcomes[case.id]
    assert outcome.journal["status"] == "completed", outcome.why()
    assert not outcome.journal["deviated"], outcome.why()
    assert outcome.exit_code == 0, outcome.why()
    after = outcome.journal["steady_states"]["after"]["probes"]
    judged = [p for p in after if isinstance(p.get("output"), dict) and "ok" in p["output"]]
    assert judged, "no probe judged anything"
    # every window probe judged the fault, none held vacuously after the method
    assert not [p["activity"]["name"] for p in judged if p["output"].get("vacuous")]


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.control in CLUSTER_DEFECTS], ids=lambda c: c.id
)
def test_a_replacement_that_is_up_but_not_ready_deviates(
    case: Case, outcomes: dict[str, Outcome]
) -> None:
    """Ready, not scrapable (issue 19): the replacement is `up` in Prometheus long before it is
    Ready; the recovery probe and the readiness check judge Ready pods and the timed-out await."""
    outcome = outcomes[case.id]
    expected = CLUSTER_DEFECTS[str(case.control)][2]
    assert outcome.journal["status"] == "completed", outcome.why()
    assert outcome.journal["deviated"], outcome.why()
    assert outcome.exit_code == 1
    assert outcome.failing_probes() == expected, outcome.why()


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.control and c.control not in CLUSTER_DEFECTS],
    ids=lambda c: c.id,
)
def test_a_plausible_defect_deviates_as_on_the_local_stack(
    case: Case, outcomes: dict[str, Outcome]
) -> None:
    """The local negative control's verdict: deviated, on the probes controls.yml names (and
    at most those a cluster adds, ALSO_ON_A_CLUSTER)."""
    outcome = outcomes[case.id]
    expected = set(_controls()[str(case.control)]["probes"])
    also = ALSO_ON_A_CLUSTER.get(str(case.control), set())
    assert outcome.journal["status"] == "completed", outcome.why()
    assert outcome.journal["deviated"], outcome.why()
    assert outcome.exit_code == 1
    assert expected <= outcome.failing_probes() <= expected | also, outcome.why()


# ------------------------------------------------------------ the simulated kubelet, alone
def _probed_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, misbehaviour: Misbehaviour | None
) -> Iterator[tuple[FakeKubeAPI, SimulatedSystem, Any]]:
    """The overlay on the fake API server, its pods probed by the simulation (ticked by hand,
    no Prometheus), and the kubernetes driver talking to it."""
    cluster = FakeKubeAPI.from_overlay(grace_seconds=0.0, ready_seconds=0.0)
    server, url = serve(cluster)
    try:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {CONTEXT: url}, CONTEXT)
        isolate_client(monkeypatch, kubeconfig)
        config = HarnessConfig.from_chaos(
            {
                "target": "kubernetes",
                "kube_context": CONTEXT,
                "kube_allowed_contexts": [CONTEXT],
                "kube_allowed_servers": {CONTEXT: url},
            }
        )
        system = SimulatedSystem(
            cluster, Registry(), tmp_path / "targets.json", misbehaviour=misbehaviour
        )
        system.tick()
        yield cluster, system, get_driver(config)
    finally:
        server.shutdown()
        server.server_close()


def _tick_for(system: SimulatedSystem, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        system.tick()
        time.sleep(0.05)


@pytest.mark.parametrize("broken", [False, True], ids=["healthy", "mlflow-liveness-is-readiness"])
def test_a_liveness_restart_keeps_the_name_and_counts(
    broken: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kubelet's view of an RDS cut: MLflow's readiness (a registry call) fails, so its pods
    leave the Service; only a liveness probe that needs the database (the control's) restarts
    them, in place: same names, restartCount > 0, as the driver reports it."""
    misbehaviour = SIMULATED_CONTROLS["mlflow-liveness-is-readiness"] if broken else None
    for cluster, system, driver in _probed_cluster(tmp_path, monkeypatch, misbehaviour):
        before = driver.list_pods(App.MLFLOW.value)
        assert [p.restarts for p in before] == [0, 0, 0] and all(p.ready for p in before)
        driver.cut_path("mlflow-rds", "blackhole", None, 60)
        # liveness 5 s x 2 (the control's) or 10 s x 6 (the manifest's), scaled by 0.2
        _tick_for(system, 4.0)
        now = driver.list_pods(App.MLFLOW.value)
        assert {p.name for p in now} == {p.name for p in before}
        assert not any(p.ready for p in now), now  # readiness needs the database
        restarted = [p.name for p in now if p.restarts > 0]
        assert bool(restarted) is broken, now
        if broken:  # and the kubernetes object says so
            [pod] = [p for (_, name), p in cluster.pods.items() if name == restarted[0]]
            assert pod["status"]["containerStatuses"][0]["restartCount"] >= 1
        driver.restore_path("mlflow-rds")
        _tick_for(system, 3.0)
        if not broken:
            assert all(p.ready for p in driver.list_pods(App.MLFLOW.value))
