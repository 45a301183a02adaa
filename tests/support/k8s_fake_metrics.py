"""What the fake cluster's pods would export, and a real Prometheus scraping it: the Prometheus
fixture of the target=kubernetes verdict tests.

No kube-apiserver, kubelet or container can run here (k8s_fake_api.py says why), so no
recommender, MLflow or Locust pod really runs behind the fake API server. `SimulatedSystem`
stands in for them: its series follow the fake cluster's state, as the real processes'
would, and a real `prometheus` scrapes them with the real relabelling and alert rules.

What it simulates, read from the fake cluster on every tick (`TICK_SECONDS`):

- **Who can reach whom**: the NetworkPolicies of the namespace, evaluated (pod and namespace
  selectors of every `Ingress`/`Egress` policy, the manifests' and the harness's alike; ports
  and ipBlocks are not modelled), and MLflow's Service endpoints (its ready, non-terminating
  pods). The recommender refreshes through them: reco -> an MLflow endpoint -> PostgreSQL.
- **Each recommender pod** (`reco_engine_in_fallback_mode`, `reco_engine_model_info{version,
  source}`, `reco_engine_refresh_failures_total{reason}` with every reason at 0 from the
  start, as helius_reco.metrics exports them): one refresh attempt when the pod starts (the
  service's lifespan does one before its first answer), then one every `refresh_seconds`, at
  a phase of its own. A failed refresh counts a failure (`timeout` when the path to MLflow is
  blackholed, `unavailable` when MLflow has no endpoint or cannot reach its database) and sets
  the gauge to 1; a successful one sets it to 0 and the model to the registry's version (the
  MLflow stub, mlflow_stub.py) and `reco_engine_last_successful_refresh_timestamp_seconds`
  to the wall time (0 until the first success: it advances every refresh while the registry is
  reachable and stands still while it is cut). A Chaos Mesh latency on reco -> MLflow slows
  refreshes but does not fail them (800 ms is well inside the refresh deadline). Its own
  middleware's series of the answers it gives (`reco_engine_requests_total{route,method,
  status}`, `reco_engine_requests_latency_seconds{route}` with the service's buckets, born
  with its first answer, a fixed low latency distribution, 500s only under
  `fallback_error_share` while in fallback) and a flat `process_resident_memory_bytes`; a
  restarted or new process starts its series from 0.
- **Each load generator worker** (`helius_client_requests_total{name,outcome,reason}`,
  `helius_client_request_latency_seconds`, `helius_client_users`,
  `helius_client_answers_total{model_version,model_source,model_digest,reco_pod}` (the
  answers spread evenly over the serving recommenders), as loadtests/locustfile.py
  exports them): while the master and the worker are Ready, it sends its share of
  `LOCUST_TARGET_RPS` (from the `loadgen-settings` ConfigMap the driver wrote) to the
  recommender Service: spread over the ready recommender pods, all successful, latencies in a
  fixed healthy distribution; with no ready recommender every request fails (`connection`).
- **Scrapes**: a pod answers `/metrics` from a second before its (re)started container is up
  (its server listens, then the probes run) until it is deleted, Ready or not: a starting,
  restarting or deleted pod's scrape fails, `up` 0, until it listens or service discovery
  drops the target, as on a cluster; a running pod that fails its readiness probe is `up`.
  Prometheus finds the pods through file-based SD written from the fake cluster every tick,
  each target carrying the `__meta_kubernetes_*` labels kubernetes_sd would give it, and the
  scrape job uses the relabel_configs of manifests/monitoring/prometheus/prometheus.yml
  verbatim, followed by two rules that send the scrape to this exporter
  (`/pods/<namespace>/<pod>/metrics`) instead of the pod IP. The alert rules are the real file.
- **The kubelet's probes** (`_tick_probes`): every started container of the namespace is probed with
  its pod spec's `livenessProbe` and `readinessProbe` (path, `periodSeconds` x `probe_time_scale` at
  a phase of its own, `failureThreshold`), against what the simulated process answers on that path
  (`_answers`): the recommender's `/health` 200 and `/ready` 200 once its first refresh was
  attempted (helius_reco's lifespan), MLflow's `/health` 200 and its registry API 200 only while it
  reaches PostgreSQL, anything else 200 (exec and TCP probes pass). A new pod is Ready once its cold
  start is over *and* its readiness probe passed (the fake's `readiness_gated`). `failureThreshold`
  liveness failures in a row restart the container in place (FakeKubeAPI.restart_container: same
  name, `restartCount` + 1, not Ready and not scraped until it is up again; a recommender restarts
  with a fresh process: first refresh, counters from 0, but its pod's model cache, an emptyDir,
  kept: a first refresh that fails serves the cached model, `source="cache"`); readiness failures
  make the pod not Ready (out of the Service's endpoints) until the probe passes again. The startup
  probe is not run (the cold start timer stands for it). `probe_time_scale` (0.2) is the factor
  between this test's timeline and a cluster's (1 s scrapes against the cluster profile's 5 s): the
  recommender's liveness budget of 3 x 10 s is 6 s here, inside the shortened MLflow outage (12 s)
  as the cluster profile's 60 s outage outlasts its 32 s.

`Misbehaviour` makes it plausibly wrong, like the local stack's negative controls
(chaoshelius/negative/fragile/): a zone's recommender whose gauge never says fallback
(`lying_pod_app`), a share of predictions failing while a pod is in fallback
(`fallback_errors_app`), a recommender whose `/health` (its liveness endpoint) answers 503
while its last refresh failed (`health_needs_mlflow_app`), a recommender whose `/ready` needs
one successful refresh (`ready_needs_refresh`, issue 19's seeded defect), or MLflow pods
shipped with a
liveness probe copied from their readiness probe (profile `mlflow-liveness-is-readiness`: the
probe is written into the fake cluster's MLflow Deployment and pods, as a user's manifest
would carry it).

Scrape interval 1 s (the local stack's; the cluster profile's is 5 s): the test shortens the
timing keys so the whole catalogue runs in minutes, and windows of a few seconds need 1 s
samples. Service discovery has a real propagation delay: Prometheus's discovery manager
forwards target changes at most every 5 s, as it does for kubernetes_sd on a cluster. Two
probes compare Prometheus's view of a new pod with the cluster's, and hold only when a pod
takes longer to be Ready than that delay (true of the recommender and MLflow on a cluster):
`fallback_engaged_within(after_app_back="mlflow")` takes "MLflow back" from its first
scrape, so recommenders that reached a Ready MLflow pod Prometheus had not discovered yet
would look "cleared before the dependency was back"; `replicas_recovered_within`'s "still
up now" during the zone drain's rolling restart would count an old pod gone before its
replacement was discovered.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import yaml

from chaoshelius.topology import (
    CLIENT_ANSWERS,
    CLIENT_LATENCY,
    CLIENT_REQUESTS,
    FALLBACK_GAUGE,
    LAST_REFRESH_GAUGE,
    MODEL_INFO,
    NAMESPACE,
    PREDICT_ROUTE,
    REFRESH_FAILURES,
    RESIDENT_MEMORY,
    SERVER_LATENCY,
    SERVER_REQUESTS,
    App,
)
from support.http import reply, serve
from support.k8s_fake_api import FakeKubeAPI, _is_ready, _selects
from support.mlflow_stub import Registry
from support.prom_fixture import launch_prometheus

REPO = Path(__file__).resolve().parents[2]
MANIFEST_PROMETHEUS = REPO / "manifests" / "monitoring" / "prometheus" / "prometheus.yml"
ALERT_RULES = REPO / "manifests" / "monitoring" / "rules" / "helius-alerts.yml"
TICK_SECONDS = 0.1
# a starting pod's server listens (and answers scrapes) this long before it is Ready
LISTEN_BEFORE_READY_SECONDS = 1.0
SCRAPE_SECONDS = 1
# helius_reco.metrics.REFRESH_FAILURE_REASONS (exported at 0 from the start)
REFRESH_REASONS = ("timeout", "unavailable", "not_found", "artifact_rejected", "busy", "disabled")
PREDICT = "/predict"
# loadtests/helius_traffic.REASONS, the ones this simulation produces
CLIENT_REASONS = ("ok", "http_5xx", "connection")
# a healthy recommender's client latency: (bucket upper bound, share of requests)
LATENCY_SHARES = ((0.005, 0.3), (0.0075, 0.4), (0.01, 0.2), (0.02, 0.09), (0.05, 0.01))
LATENCY_BOUNDS = (0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.5, 1.0)
# the recommender's own /predict latency (helius_reco.metrics.LATENCY_BUCKETS), a little under
# what its clients measure: (bucket upper bound, share of requests)
SERVER_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SERVER_SHARES = ((0.0025, 0.3), (0.005, 0.5), (0.01, 0.19), (0.025, 0.01))
# a recommender's resident memory: flat under a steady load (plus a per-pod offset)
RSS_BYTES = 180 * 1024 * 1024


@dataclass(frozen=True)
class Misbehaviour:
    """A plausibly broken system (each the twin of a local negative control)."""

    lying_zone: str | None = None  # fragile.lying_pod_app: this zone's gauge stays 0
    fallback_error_share: float = 0.0  # fragile.fallback_errors_app: 0.025 of predictions
    health_needs_mlflow: bool = False  # fragile.health_needs_mlflow_app: /health needs MLflow
    # issue 19's seeded defect: /ready answers 200 only once a registry refresh succeeded, so
    # a recommender started during an MLflow outage never takes traffic while it lasts
    ready_needs_refresh: bool = False
    # profile mlflow-liveness-is-readiness: MLflow's livenessProbe (path, period_seconds,
    # failure_threshold, timeout_seconds), written into the cluster's MLflow pods
    mlflow_liveness: dict[str, Any] | None = None


@dataclass
class _Probe:
    """The kubelet's state of one probe of one container."""

    next_at: float
    failures: int = 0


@dataclass
class _Reco:
    zone: str
    next_refresh: float
    fallback: bool = False
    version: str = "1"
    source: str = "registry"
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REFRESH_REASONS, 0))
    last_success: float = 0.0  # wall time of the last successful refresh (0: never)
    rss: float = RSS_BYTES
    # its own /predict answers (helius_reco's middleware): by status, and their latency
    answered: dict[str, float] = field(default_factory=dict)
    latency: dict[float, float] = field(default_factory=lambda: dict.fromkeys(SERVER_BOUNDS, 0.0))
    latency_sum: float = 0.0


@dataclass
class _Worker:
    requests: dict[tuple[str, str], float] = field(
        default_factory=lambda: {
            ("success" if r == "ok" else "failure", r): 0.0 for r in CLIENT_REASONS
        }
    )
    latency: dict[float, float] = field(default_factory=lambda: dict.fromkeys(LATENCY_BOUNDS, 0.0))
    latency_sum: float = 0.0
    users: float = 0.0
    # good answers by (model_version, model_source, model_digest, reco_pod)
    answers: dict[tuple[str, str, str, str], float] = field(default_factory=dict)


def _peer_admits(peer: dict[str, Any], policy_ns: str, pod_ns: str, labels: dict[str, str]) -> bool:
    """A NetworkPolicyPeer (podSelector / namespaceSelector) admitting a pod; ipBlock: no."""
    if "ipBlock" in peer:
        return False
    ns_selector = peer.get("namespaceSelector")
    if ns_selector is None:
        if pod_ns != policy_ns:
            return False
    elif not _selects(ns_selector, {"kubernetes.io/metadata.name": pod_ns}):
        return False
    return _selects(peer.get("podSelector") or {}, labels)


def _allowed(
    policies: list[dict[str, Any]],
    pod: dict[str, Any],
    other: dict[str, Any],
    direction: str,
) -> bool:
    """Does the NetworkPolicy set let `pod` send (Egress) to / receive (Ingress) from `other`?
    Not isolated in that direction -> yes; else some rule must admit `other`."""
    meta, other_meta = pod["metadata"], other["metadata"]
    selecting = [
        p
        for p in policies
        if p["metadata"].get("namespace", meta["namespace"]) == meta["namespace"]
        and direction in p["spec"].get("policyTypes", ["Ingress"])
        and _selects(p["spec"].get("podSelector") or {}, meta.get("labels", {}))
    ]
    if not selecting:
        return True
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    for policy in selecting:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            if peers is None or any(
                _peer_admits(
                    peer,
                    policy["metadata"].get("namespace", meta["namespace"]),
                    other_meta["namespace"],
                    other_meta.get("labels", {}),
                )
                for peer in peers
            ):
                return True
    return False


class SimulatedSystem:
    """The pods' behaviour and metrics, following a FakeKubeAPI (see the module docstring)."""

    def __init__(
        self,
        cluster: FakeKubeAPI,
        registry: Registry,
        sd_file: Path,
        refresh_seconds: float = 1.0,
        misbehaviour: Misbehaviour | None = None,
        probe_time_scale: float = 0.2,
    ) -> None:
        self.cluster = cluster
        self.registry = registry
        self.sd_file = sd_file
        self.refresh_seconds = refresh_seconds
        self.misbehaviour = misbehaviour or Misbehaviour()
        self.probe_time_scale = probe_time_scale
        self.exporter_address = ""  # host:port, set by serve()
        self._recos: dict[str, _Reco] = {}
        self._probes: dict[tuple[str, str], _Probe] = {}  # (pod, "liveness"|"readiness")
        self._restarting: set[str] = set()  # recommenders restarted, their process not up yet
        # each recommender pod's on-disk cache (an emptyDir: it survives a restart in place,
        # not the pod): the version of its last successful refresh
        self._cached: dict[str, str] = {}
        if self.misbehaviour.mlflow_liveness is not None:
            self._ship_mlflow_liveness(self.misbehaviour.mlflow_liveness)
        self._workers: dict[str, _Worker] = {}
        self._last_tick = time.monotonic()
        self._sd_written = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()

    # ------------------------------------------------------------ the cluster, as pods see it
    def _pods(self, app: str) -> list[dict[str, Any]]:
        return [
            p
            for (ns, _), p in sorted(self.cluster.pods.items())
            if ns == NAMESPACE and p["metadata"]["labels"].get("app") == app
        ]

    @staticmethod
    def _alive(pod: dict[str, Any]) -> bool:
        return bool(pod["spec"].get("nodeName")) and "deletionTimestamp" not in pod["metadata"]

    def _endpoints(self, app: str) -> list[dict[str, Any]]:
        """The Service's endpoints: ready, non-terminating pods of `app`."""
        return [p for p in self._pods(app) if self._alive(p) and _is_ready(p)]

    def _reaches(self, source: dict[str, Any], destination: dict[str, Any]) -> bool:
        policies = [p for (ns, _), p in self.cluster.policies.items() if ns == NAMESPACE]
        return _allowed(policies, source, destination, "Egress") and _allowed(
            policies, destination, source, "Ingress"
        )

    def _refresh_failure(self, reco: dict[str, Any]) -> str | None:
        """Why a refresh of `reco` fails now (a reason label), or None when it succeeds."""
        mlflows = self._endpoints(App.MLFLOW.value)
        if not mlflows:
            return "unavailable"  # connection refused: the Service has no endpoint
        reachable = [m for m in mlflows if self._reaches(reco, m)]
        if not reachable:
            return "timeout"  # packets dropped: the refresh deadline passes
        databases = self._endpoints(App.POSTGRES.value)
        if not any(self._reaches(m, db) for m in reachable for db in databases):
            return "unavailable"  # MLflow answers 503 once its database connect times out
        return None

    def _ship_mlflow_liveness(self, probe: dict[str, Any]) -> None:
        """MLflow's manifest with this liveness probe: its Deployment's template and its pods."""
        liveness = {
            "httpGet": {"path": probe["path"], "port": "http"},
            "periodSeconds": int(probe["period_seconds"]),
            "failureThreshold": int(probe["failure_threshold"]),
            "timeoutSeconds": int(probe.get("timeout_seconds", 1)),
        }
        with self.cluster.lock:
            specs = [
                d["spec"]["template"]["spec"]
                for (ns, _), d in self.cluster.deployments.items()
                if ns == NAMESPACE
                and d["spec"]["template"]["metadata"].get("labels", {}).get("app")
                == App.MLFLOW.value
            ]
            specs += [p["spec"] for p in self._pods(App.MLFLOW.value)]
            for spec in specs:
                spec["containers"][0]["livenessProbe"] = dict(liveness)

    def _answers(self, pod: dict[str, Any], path: str) -> bool:
        """Does the simulated process of `pod` answer 200 on `path`?"""
        app = pod["metadata"]["labels"].get("app")
        name = pod["metadata"]["name"]
        if app == App.RECO.value:
            state = self._recos.get(name)
            if state is None:
                return False  # not started (or restarting): nothing listens
            if path.startswith("/health"):
                return not (self.misbehaviour.health_needs_mlflow and state.fallback)
            if self.misbehaviour.ready_needs_refresh:
                return state.source == "registry"  # a refresh succeeded (at least once)
            return True  # /ready: a model is loaded and the first refresh was attempted
        if app == App.MLFLOW.value and path.startswith("/api/"):
            databases = self._endpoints(App.POSTGRES.value)
            return any(self._reaches(pod, db) for db in databases)
        return True  # MLflow's /health: the process runs

    def _tick_probes(self, now: float) -> None:
        """Run the liveness and readiness probes that are due (see the module docstring)."""
        live = [
            p
            for (ns, _), p in sorted(self.cluster.pods.items())
            if ns == NAMESPACE and self._alive(p)
        ]
        names = {p["metadata"]["name"] for p in live}
        for key in [k for k in self._probes if k[0] not in names]:
            del self._probes[key]
        for pod in live:
            ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
            if self.cluster.starting(ns, name):
                for kind in ("liveness", "readiness"):
                    self._probes.pop((name, kind), None)  # probing starts once it is up
                continue
            container = pod["spec"]["containers"][0]
            for kind in ("liveness", "readiness"):
                spec = container.get(f"{kind}Probe")
                if not spec:
                    continue
                period = float(spec.get("periodSeconds", 10)) * self.probe_time_scale
                probe = self._probes.get((name, kind))
                if probe is None:
                    phase = (zlib.crc32(f"{name}/{kind}".encode()) % 1000) / 1000 * period
                    probe = self._probes[(name, kind)] = _Probe(now + phase)
                if now < probe.next_at:
                    continue
                probe.next_at += period
                # exec and tcpSocket probes (PostgreSQL's, MinIO's) pass: not simulated
                ok = "httpGet" not in spec or self._answers(pod, spec["httpGet"].get("path", "/"))
                probe.failures = 0 if ok else probe.failures + 1
                failed = probe.failures >= int(spec.get("failureThreshold", 3))
                if kind == "liveness" and failed:
                    self.cluster.restart_container(ns, name)
                    if self._recos.pop(name, None) is not None:
                        self._restarting.add(name)
                    self._probes.pop((name, "liveness"), None)
                    self._probes.pop((name, "readiness"), None)
                    break
                if kind == "readiness" and (ok or failed) and ok != _is_ready(pod):
                    self.cluster.set_ready(ns, name, ok)

    # ------------------------------------------------------------ time passes
    def tick(self) -> None:
        with self.cluster.lock:
            self.cluster.settle()
            now = time.monotonic()
            dt, self._last_tick = now - self._last_tick, now
            with self._lock:
                self._tick_recos(now)
                self._tick_probes(now)
                self._tick_load(dt)
            targets = self._targets()
        text = json.dumps(targets, indent=1, sort_keys=True)
        if text != self._sd_written:  # Prometheus re-reads the file when it changes
            tmp = self.sd_file.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(self.sd_file)
            self._sd_written = text

    def _tick_recos(self, now: float) -> None:
        live = {p["metadata"]["name"]: p for p in self._pods(App.RECO.value) if self._alive(p)}
        for name in set(self._recos) - set(live):
            del self._recos[name]
        for name in set(self._cached) - set(live):
            del self._cached[name]
        for name, pod in live.items():
            if name in self._restarting:
                if self.cluster.starting(NAMESPACE, name):
                    continue  # restarted in place: its new process is not up yet
                self._restarting.discard(name)
            state = self._recos.get(name)
            if state is None:  # a new pod: one refresh before its first answer
                phase = (zlib.crc32(name.encode()) % 1000) / 1000 * self.refresh_seconds
                state = _Reco(self.cluster.zone_of(pod) or "?", now + phase)
                state.rss += zlib.crc32(name.encode()) % 4096 * 4096
                self._recos[name] = state
                self._refresh(pod, state, first=True)
            elif now >= state.next_refresh:
                state.next_refresh += self.refresh_seconds
                self._refresh(pod, state)

    def _refresh(self, pod: dict[str, Any], state: _Reco, first: bool = False) -> None:
        reason = self._refresh_failure(pod)
        if reason is None:
            state.last_success = time.time()
            state.fallback = False
            state.version = self.registry.current()
            state.source = "registry"
            self._cached[pod["metadata"]["name"]] = state.version
        else:
            state.failures[reason] += 1
            state.fallback = True
            if first:  # a restarted process loads its pod's cache, a new pod the baseline
                cached = self._cached.get(pod["metadata"]["name"])
                state.source = "baseline" if cached is None else "cache"
                state.version = cached or state.version

    def _tick_load(self, dt: float) -> None:
        workers = [
            p
            for p in self._pods(App.LOADGEN.value)
            if p["metadata"]["labels"].get("helius.chaos/loadgen-role") == "worker"
            and self._alive(p)
        ]
        for name in set(self._workers) - {p["metadata"]["name"] for p in workers}:
            del self._workers[name]
        masters = [
            p
            for p in self._pods(App.LOADGEN.value)
            if p["metadata"]["labels"].get("helius.chaos/loadgen-role") == "master"
        ]
        settings = self.cluster.configmaps.get((NAMESPACE, "loadgen-settings"), {}).get("data", {})
        rate = float(settings.get("LOCUST_TARGET_RPS") or 0)
        running = any(self._alive(m) and _is_ready(m) for m in masters)
        ready = [w for w in workers if _is_ready(w)]
        recos = [
            p["metadata"]["name"]
            for p in self._endpoints(App.RECO.value)
            if p["metadata"]["name"] in self._recos
        ]
        in_fallback = sum(1 for r in recos if self._recos[r].fallback)
        for pod in workers:
            state = self._workers.setdefault(pod["metadata"]["name"], _Worker())
            sending = running and pod in ready
            state.users = float(settings.get("LOCUST_USERS") or 0) / max(1, len(ready))
            if not sending or rate <= 0:
                continue
            n = rate / len(ready) * dt
            if not recos:
                state.requests[("failure", "connection")] += n
                self._observe(state, n, 0.0)
                continue
            failing = n * self.misbehaviour.fallback_error_share * in_fallback / len(recos)
            state.requests[("failure", "http_5xx")] += failing
            state.requests[("success", "ok")] += n - failing
            self._observe(state, n, None)
            for reco in recos:  # the service proxy spreads the answers evenly
                served = self._recos[reco]
                self._answer(served, n / len(recos))
                digest = (
                    "baseline0000"
                    if served.source == "baseline"
                    else self.registry.digest(served.version)
                )
                key = (served.version, served.source, digest, reco)
                state.answers[key] = state.answers.get(key, 0.0) + (n - failing) / len(recos)

    def _answer(self, reco: _Reco, n: float) -> None:
        """`reco` answers `n` predictions: counted and timed by its own middleware (a share
        failing with 500 while it is in fallback, under `fallback_error_share`)."""
        failing = n * self.misbehaviour.fallback_error_share if reco.fallback else 0.0
        if failing:  # a status's series is born with its first answer
            reco.answered["500"] = reco.answered.get("500", 0.0) + failing
        reco.answered["200"] = reco.answered.get("200", 0.0) + n - failing
        for bound, share in SERVER_SHARES:
            reco.latency[bound] += n * share
            reco.latency_sum += n * share * bound * 0.8

    @staticmethod
    def _observe(state: _Worker, n: float, seconds: float | None) -> None:
        shares = ((seconds, 1.0),) if seconds is not None else LATENCY_SHARES
        for value, share in shares:
            bound = next(b for b in LATENCY_BOUNDS if value <= b)
            state.latency[bound] += n * share
            state.latency_sum += n * share * value

    # ------------------------------------------------------------ what Prometheus sees
    def _targets(self) -> list[dict[str, Any]]:
        """file-SD target groups carrying the `__meta_kubernetes_*` labels kubernetes_sd
        (role pod, attach_metadata.node) gives a pod; `__address__` is its pod IP and the
        annotated port, as kubernetes_sd builds it from a declared container port."""
        groups = []
        for (ns, name), pod in sorted(self.cluster.pods.items()):
            if ns != NAMESPACE or not pod["spec"].get("nodeName"):
                continue  # the SD config watches the helius namespace; no IP before scheduling
            meta = pod["metadata"]
            uid = int(meta["uid"].rsplit("-", 1)[1])
            ip = f"10.244.{uid // 250 % 250}.{uid % 250 + 2}"
            node = self.cluster.nodes.get(pod["spec"]["nodeName"], {})
            labels: dict[str, str] = {
                "__meta_kubernetes_namespace": ns,
                "__meta_kubernetes_pod_name": name,
                "__meta_kubernetes_pod_ip": ip,
                "__meta_kubernetes_pod_phase": pod["status"].get("phase", "Pending"),
                "__meta_kubernetes_pod_ready": "true" if _is_ready(pod) else "false",
                "__meta_kubernetes_pod_node_name": pod["spec"]["nodeName"],
            }
            for key, value in (meta.get("labels") or {}).items():
                labels[f"__meta_kubernetes_pod_label_{_sanitize(key)}"] = value
            for key, value in (meta.get("annotations") or {}).items():
                labels[f"__meta_kubernetes_pod_annotation_{_sanitize(key)}"] = value
            for key, value in (node.get("metadata", {}).get("labels") or {}).items():
                labels[f"__meta_kubernetes_node_label_{_sanitize(key)}"] = value
            port = (meta.get("annotations") or {}).get("prometheus.io/port", "80")
            groups.append({"targets": [f"{ip}:{port}"], "labels": labels})
        return groups

    def _listening(self, pod: dict[str, Any]) -> bool:
        """A pod's server answers from LISTEN_BEFORE_READY_SECONDS before its (re)started
        container is up until it is deleted, Ready or not (a pod that fails its readiness
        probe still serves `/metrics`)."""
        if not self._alive(pod):
            return False
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        ready_at = self.cluster._ready_at.get(key)
        if ready_at is None:
            return True  # up: Ready, or running and failing its readiness probe
        return time.monotonic() >= ready_at - LISTEN_BEFORE_READY_SECONDS

    def metrics(self, namespace: str, name: str) -> str | None:
        """The exposition a pod's `/metrics` answers, or None when it does not answer."""
        with self.cluster.lock:
            pod = self.cluster.pods.get((namespace, name))
            if pod is None or not self._listening(pod):
                return None
            app = pod["metadata"]["labels"].get("app")
        with self._lock:
            if app == App.RECO.value:
                state = self._recos.get(name)
                return None if state is None else self._reco_metrics(state)
            if app == App.LOADGEN.value:
                worker = self._workers.get(name)
                return "" if worker is None else self._client_metrics(worker)
        return f"# TYPE {app}_simulated gauge\n{app}_simulated 1\n"

    def _reco_metrics(self, state: _Reco) -> str:
        lying = state.zone == self.misbehaviour.lying_zone
        gauge = 1 if state.fallback and not lying else 0
        lines = [f"# TYPE {FALLBACK_GAUGE} gauge", f"{FALLBACK_GAUGE} {gauge}"]
        lines += [f"# TYPE {MODEL_INFO} gauge"]
        lines += [f'{MODEL_INFO}{{version="{state.version}",source="{state.source}"}} 1']
        lines += [f"# TYPE {REFRESH_FAILURES} counter"]
        lines += [f'{REFRESH_FAILURES}{{reason="{r}"}} {n}' for r, n in state.failures.items()]
        lines += [
            f"# TYPE {LAST_REFRESH_GAUGE} gauge",
            f"{LAST_REFRESH_GAUGE} {state.last_success}",
        ]
        lines += [f"# TYPE {RESIDENT_MEMORY} gauge", f"{RESIDENT_MEMORY} {state.rss:.1f}"]
        return "\n".join(lines + self._server_metrics(state)) + "\n"

    @staticmethod
    def _server_metrics(state: _Reco) -> list[str]:
        """The middleware's series of /predict (none before its first answer, as
        prometheus_client exports a labelled child only once it is used)."""
        if not state.answered:
            return []
        route = f'route="{PREDICT_ROUTE}"'
        lines = [f"# TYPE {SERVER_REQUESTS} counter"]
        for status, count in sorted(state.answered.items()):
            lines.append(
                f'{SERVER_REQUESTS}{{{route},method="POST",status="{status}"}} {int(count)}'
            )
        lines.append(f"# TYPE {SERVER_LATENCY} histogram")
        running = 0.0
        for bound in SERVER_BOUNDS:
            running += state.latency[bound]
            lines.append(f'{SERVER_LATENCY}_bucket{{{route},le="{bound}"}} {int(running)}')
        lines.append(f'{SERVER_LATENCY}_bucket{{{route},le="+Inf"}} {int(running)}')
        lines.append(f"{SERVER_LATENCY}_count{{{route}}} {int(running)}")
        lines.append(f"{SERVER_LATENCY}_sum{{{route}}} {state.latency_sum:.6f}")
        return lines

    @staticmethod
    def _client_metrics(state: _Worker) -> str:
        lines = [f"# TYPE {CLIENT_REQUESTS} counter"]
        for (outcome, reason), count in sorted(state.requests.items()):
            labels = f'name="{PREDICT}",outcome="{outcome}",reason="{reason}"'
            lines.append(f"{CLIENT_REQUESTS}{{{labels}}} {int(count)}")
        lines.append(f"# TYPE {CLIENT_LATENCY} histogram")
        running = 0.0
        for bound in LATENCY_BOUNDS:
            running += state.latency[bound]
            lines.append(f'{CLIENT_LATENCY}_bucket{{name="{PREDICT}",le="{bound}"}} {int(running)}')
        lines.append(f'{CLIENT_LATENCY}_bucket{{name="{PREDICT}",le="+Inf"}} {int(running)}')
        lines.append(f'{CLIENT_LATENCY}_count{{name="{PREDICT}"}} {int(running)}')
        lines.append(f'{CLIENT_LATENCY}_sum{{name="{PREDICT}"}} {state.latency_sum:.6f}')
        lines += ["# TYPE helius_client_users gauge", f"helius_client_users {state.users:g}"]
        lines.append(f"# TYPE {CLIENT_ANSWERS} counter")
        for (version, source, digest, reco), count in sorted(state.answers.items()):
            labels = (
                f'model_version="{version}",model_source="{source}",model_digest="{digest}",'
                f'reco_pod="{reco}"'
            )
            lines.append(f"{CLIENT_ANSWERS}{{{labels}}} {int(count)}")
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------ running it
    def run(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            self.tick()

    @contextmanager
    def serve(self) -> Iterator[SimulatedSystem]:
        """Tick in the background and answer scrapes on 127.0.0.1 (port 0)."""
        system = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802  http.server's spelling
                parts = self.path.strip("/").split("/")
                body = None
                if len(parts) == 4 and parts[0] == "pods" and parts[3] == "metrics":
                    body = system.metrics(parts[1], parts[2])
                if body is None:
                    self.send_error(503, "pod not running")
                    return
                reply(self, body.encode(), "text/plain; version=0.0.4")

            def log_message(self, *args: object) -> None:
                return

        self.tick()
        server, url = serve(Handler)
        self.exporter_address = url.removeprefix("http://")
        ticker = threading.Thread(target=self.run, daemon=True)
        ticker.start()
        try:
            yield self
        finally:
            self._stop.set()
            ticker.join()
            server.shutdown()
            server.server_close()


def _sanitize(name: str) -> str:
    """A Kubernetes label/annotation name as kubernetes_sd spells it in a meta label."""
    return "".join(c if c.isalnum() else "_" for c in name)


def prometheus_config(system: SimulatedSystem) -> dict[str, Any]:
    """The manifests' scrape job on file SD, its relabelling followed by the two rules that
    route each scrape to the exporter; the real alert rules; 1 s scrapes and evaluations."""
    manifest = yaml.safe_load(MANIFEST_PROMETHEUS.read_text())
    [job] = manifest["scrape_configs"]
    relabel = [
        *job["relabel_configs"],
        {"target_label": "__address__", "replacement": system.exporter_address},
        {
            "source_labels": ["namespace", "pod"],
            "separator": "/",
            "regex": "(.+)",
            "target_label": "__metrics_path__",
            "replacement": "/pods/$1/metrics",
        },
    ]
    return {
        "global": {
            "scrape_interval": f"{SCRAPE_SECONDS}s",
            "scrape_timeout": f"{SCRAPE_SECONDS * 800}ms",
            "evaluation_interval": f"{SCRAPE_SECONDS}s",
        },
        "rule_files": [str(ALERT_RULES)],
        "scrape_configs": [
            {
                "job_name": job["job_name"],
                "honor_labels": job.get("honor_labels", False),
                "file_sd_configs": [{"files": [str(system.sd_file)], "refresh_interval": "1s"}],
                "relabel_configs": relabel,
            }
        ],
    }


@contextmanager
def scraped(workdir: Path, system: SimulatedSystem) -> Iterator[str]:
    """A real Prometheus scraping `system` (which must be serving); yields its URL once every
    recommender and MLflow pod of the cluster has been scraped."""
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(system), sort_keys=False))
    proc, url = launch_prometheus(workdir, config, workdir / "data")
    try:
        _wait_scraped(url, system)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_scraped(url: str, system: SimulatedSystem, timeout: float = 30.0) -> None:
    with system.cluster.lock:
        want = {app.value: len(system._endpoints(app.value)) for app in (App.RECO, App.MLFLOW)}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = {}
        for app in want:
            answer = httpx.get(
                f"{url}/api/v1/query",
                params={"query": f'count(up{{app="{app}"}} == 1)'},
                timeout=2,
            ).json()
            result = answer["data"]["result"]
            got[app] = int(float(result[0]["value"][1])) if result else 0
        fallback = httpx.get(
            f"{url}/api/v1/query", params={"query": f"count({FALLBACK_GAUGE})"}, timeout=2
        ).json()["data"]["result"]
        if got == want and fallback:
            return
        time.sleep(0.5)
    raise RuntimeError(f"Prometheus did not scrape every pod within {timeout:g} s: {got} of {want}")


__all__ = ["Misbehaviour", "SimulatedSystem", "prometheus_config", "scraped"]
