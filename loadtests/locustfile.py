"""Helius load: realistic `/predict` traffic plus a client-side Prometheus exporter.

On its own, web UI included:

    locust -f loadtests/locustfile.py --host http://127.0.0.1:17080

Headless, as the chaos experiments start it (chaoshelius.load.actions.start_load):

    python -m locust -f loadtests/locustfile.py --headless -u 100 -r 50 --run-time 300s \\
        --target-rps 250 --processes 2 --host http://127.0.0.1:17080 --metrics-port 17089 \\
        --csv reports/runs/latest/locust

The run's settings (users, spawn rate, run time, host, shape, timeout, --target-rps,
--new-connection-share; --expect-workers on a cluster) are a chaoshelius.load.plan.LoadPlan made by
start_load: locally its `locust_argv()`, on a cluster its `locust_env()` in the ConfigMap
`loadgen-settings`; the option names, shapes and defaults below come from that module.

The host defaults to the local stack's recommender service proxy (HELIUS_RECO_URL, else
http://127.0.0.1:17080). Every Helius option also reads a LOCUST_* environment variable (e.g.
LOCUST_TARGET_RPS) and the traffic options show in the web UI.

Rate: with --target-rps R every user paces itself to R / -u requests per second (Locust's
constant_throughput, counted in requests rather than tasks, with no catch-up burst after a slow
answer); without it, users think 0.2-1.0 s between tasks like a person browsing; --closed-loop
removes every wait (capacity measurements). Connection churn: after each request a user drops
its connections with probability --new-connection-share, so that share of requests opens a new
TCP connection, like a population of clients coming and going.

Traffic: each simulated client browses as a user drawn from a Zipf-skewed distribution over the
service's training users (a few unknown users take the cold-start path), asks for k in
{5, 10, 20} items, and often asks for the "next page" excluding what it was just shown. Every
answer is checked for content, not only status (see helius_traffic.check_prediction).

Client-side metrics on http://<metrics-host>:<metrics-port>/metrics, counted from Locust's
`request` event, so every request is seen, whatever its fate:
    helius_client_requests_total{name, outcome="success"|"failure", reason}
    helius_client_request_latency_seconds{name}   (histogram, 1 ms .. 10 s)
    helius_client_users                           (gauge, running simulated users)
    helius_client_answers_total{model_version, model_source, model_digest, reco_pod}
        (good /predict answers by the model and pod that served them, at most
        helius_traffic.MAX_ANSWER_SERIES label sets, the rest counted as "other")

Who serves the exporter, so that every request is counted exactly once:
- standalone Locust: itself;
- --processes N (the local target): the forked workers send their counts to the master once a
  second (and a last time when they stop), and only the master exports, so Prometheus keeps one
  `app="loadgen"` target whose values are the sums over the workers;
- distributed --master / --worker (the cluster's loadgen-master and loadgen-worker pods): each
  worker exports the requests IT made on --metrics-host:--metrics-port (the pods are scraped
  and probed there, manifests/components/chaos-harness/loadgen.yaml) and the master exports
  nothing (it is probed on its worker port, 5557), so sum() over the pods counts every request
  once.

Exit code: 1 when the failure ratio over the run exceeds --fail-ratio (default 0.01).
Shapes: --shape steady (constant -u users, the default), --shape ramp (steps up to -u over
--ramp-seconds, then holds) or --shape steps (the user counts of --steps, --step-seconds each,
then stops: the capacity measurement).
"""

from __future__ import annotations

import logging
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import helius_traffic as traffic
from locust import HttpUser, LoadTestShape, events, tag, task
from locust import runners as locust_runners
from locust.env import Environment
from locust.runners import WORKER_REPORT_INTERVAL, MasterRunner, WorkerRunner
from locust.stats import CSV_STATS_INTERVAL_SEC
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

try:  # the plan's option names and defaults (the harness image has chaoshelius on PYTHONPATH)
    from chaoshelius.load import plan as load_plan
except ImportError:  # a Locust outside the harness's environment, run from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from chaoshelius.load import plan as load_plan

log = logging.getLogger("helius.load")

PREDICT = "/predict"
HEALTH = "/health"
DEFAULT_HOST = "http://127.0.0.1:17080"  # the local stack's recommender service proxy
METRICS_MESSAGE = "helius_client_metrics"  # worker -> master: request counts since the last one
METRICS_PUSH_SECONDS = 1.0
THINK_SECONDS = (0.2, 1.0)
# Heartbeats a worker may miss before the master calls it missing and hands its users to the
# others (Locust's default, 3, is 3 s: on a busy 2-core machine a worker misses that and the
# load ends up with more users than asked).
HEARTBEAT_LIVENESS = 15
LATENCY_BUCKETS = (
    0.001,
    0.002,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    7.5,
    10.0,
)


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("Helius load")

    def option(flag: str, *, web_ui: bool = True, **kwargs: Any) -> None:
        env = load_plan.locust_env_name(flag)
        kwargs["help"] = f"{kwargs['help']} [env {env}]"
        action = group.add_argument(flag, env_var=env, **kwargs)
        # what LocustArgumentParser.add_argument(include_in_web_ui=...) sets, which an
        # argument group's add_argument does not accept
        action.include_in_web_ui = web_ui
        action.is_secret = False
        action.is_required = False
        action.is_multiple = False

    # act when Locust starts: not in the web UI
    option(
        "--metrics-port",
        type=int,
        default=17089,
        help="Port of the client-side Prometheus exporter (0: do not export).",
        web_ui=False,
    )
    option(
        "--metrics-host",
        default="127.0.0.1",
        help="Address the exporter binds to.",
        web_ui=False,
    )
    option(
        "--shape",
        choices=load_plan.LOCUST_SHAPES,
        default="steady",
        help="steady: constant -u users; ramp: step up to -u over --ramp-seconds, then hold; "
        "steps: the user counts of --steps, --step-seconds each, then stop.",
        web_ui=False,
    )
    option(
        "--steps",
        default="4,8,16,32",
        help="--shape steps: comma-separated user counts.",
        web_ui=False,
    )
    option(
        "--step-seconds",
        type=float,
        default=5.0,
        help="--shape steps: seconds per step.",
        web_ui=False,
    )
    option("--ramp-seconds", type=float, default=60.0, help="Length of the ramp.", web_ui=False)
    # traffic: read by each user when it starts, so the web UI's values apply to a new swarm
    option(
        "--target-rps",
        type=float,
        default=0.0,
        help="Requests per second of the whole load, shared by the -u users; 0: users think "
        "0.2-1.0 s between tasks instead.",
    )
    option(
        "--closed-loop",
        action="store_true",
        default=False,
        help="No wait at all between tasks (capacity measurements); overrides --target-rps.",
    )
    option(
        "--new-connection-share",
        type=float,
        default=load_plan.DEFAULT_NEW_CONNECTION_SHARE,
        help="Share of requests after which a user drops its connections, so the next request "
        "opens a new one (connection churn); 0: keep connections for ever.",
    )
    option(
        "--fail-ratio",
        type=float,
        default=0.01,
        help="Exit with code 1 when the run's failure ratio exceeds this.",
    )
    option(
        "--request-timeout",
        type=float,
        default=load_plan.DEFAULT_REQUEST_TIMEOUT_SECONDS,
        help="Client timeout per request, seconds; a hung server shows as 'timeout' failures.",
    )
    option(
        "--known-users",
        type=int,
        default=traffic.KNOWN_USERS,
        help="Users u0000.. in the service's training set (the skewed draw's support).",
    )
    option(
        "--unknown-user-share",
        type=float,
        default=traffic.UNKNOWN_USER_SHARE,
        help="Share of requests for users the model never saw (cold-start path).",
    )


class ClientMetrics(Collector):
    """The client-side metrics as plain totals: counted here (standalone, worker) or merged from
    the workers' reports (master), and exposed as Prometheus families by collect().

    helius_client_requests_total{name,outcome,reason}, helius_client_request_latency_seconds
    {name} (histogram) and helius_client_users. Every name x reason series exists from the start
    (at 0), so ratios and increase() have data before the first failure.
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        self.buckets: dict[str, list[int]] = {}  # name -> count per bucket (not cumulative) + inf
        self.sums: dict[str, float] = {}
        self.answers = traffic.AnswerCounts()
        self.users = lambda: 0.0
        self.pushing = False  # a forked worker: keep each sample for the master too
        for name in (PREDICT, HEALTH):
            self.requests[(name, "success", traffic.REASON_OK)] = 0
            for reason in traffic.REASONS[1:]:
                self.requests[(name, "failure", reason)] = 0
            self._histogram(name)
        self._pending: dict[str, Any] = self._empty_delta()

    def _histogram(self, name: str) -> list[int]:
        if name not in self.buckets:
            self.buckets[name] = [0] * (len(LATENCY_BUCKETS) + 1)
            self.sums[name] = 0.0
        return self.buckets[name]

    @staticmethod
    def _empty_delta() -> dict[str, Any]:
        return {"requests": [], "latency": {}, "answers": {}}

    def record(
        self, name: str, seconds: float, exception: BaseException | None, status: int
    ) -> None:
        reason = traffic.classify(exception, status)
        outcome = "success" if exception is None else "failure"
        key = (name, outcome, reason)
        self.requests[key] = self.requests.get(key, 0) + 1
        bucket = next(
            (i for i, bound in enumerate(LATENCY_BUCKETS) if seconds <= bound),
            len(LATENCY_BUCKETS),
        )
        self._histogram(name)[bucket] += 1
        self.sums[name] += seconds
        if not self.pushing:
            return
        # the same sample, kept for the master (a worker's delta since its last report)
        self._pending["requests"].append([name, outcome, reason])
        latency = self._pending["latency"].setdefault(name, [0.0, {}])
        latency[0] += seconds
        latency[1][bucket] = latency[1].get(bucket, 0) + 1

    def answered(self, body: Any, pod: str | None) -> None:
        """Count a good /predict answer by the model and pod that served it."""
        key = self.answers.add(traffic.answer_identity(body, pod))
        if self.pushing:
            joined = "\t".join(key)
            self._pending["answers"][joined] = self._pending["answers"].get(joined, 0) + 1

    def take_delta(self) -> dict[str, Any]:
        """What was recorded since the last call (a worker sends it to the master)."""
        delta, self._pending = self._pending, self._empty_delta()
        counts: dict[str, int] = {}
        for name, outcome, reason in delta["requests"]:
            joined = f"{name}\t{outcome}\t{reason}"
            counts[joined] = counts.get(joined, 0) + 1
        latency = {
            name: {"sum": total, "buckets": {str(b): n for b, n in buckets.items()}}
            for name, (total, buckets) in delta["latency"].items()
        }
        return {"requests": counts, "latency": latency, "answers": delta["answers"]}

    def merge(self, delta: dict[str, Any]) -> None:
        """Add a worker's delta (master)."""
        for joined, count in delta.get("requests", {}).items():
            name, outcome, reason = joined.split("\t")
            key = (name, outcome, reason)
            self.requests[key] = self.requests.get(key, 0) + int(count)
        for name, latency in delta.get("latency", {}).items():
            histogram = self._histogram(name)
            for bucket, count in latency["buckets"].items():
                histogram[int(bucket)] += int(count)
            self.sums[name] += float(latency["sum"])
        for joined, count in delta.get("answers", {}).items():
            self.answers.add(tuple(joined.split("\t")), int(count))

    def collect(self) -> Iterator[Any]:
        requests = CounterMetricFamily(
            "helius_client_requests",
            "Requests sent by the load generator, by outcome and failure reason.",
            labels=["name", "outcome", "reason"],
        )
        for (name, outcome, reason), count in sorted(self.requests.items()):
            requests.add_metric([name, outcome, reason], count)
        yield requests
        latency = HistogramMetricFamily(
            "helius_client_request_latency_seconds",
            "Latency seen by the load generator (failures included), seconds.",
            labels=["name"],
        )
        for name, counts in sorted(self.buckets.items()):
            cumulative, running = [], 0
            for bound, count in zip((*LATENCY_BUCKETS, math.inf), counts, strict=True):
                running += count
                cumulative.append((_le(bound), running))
            latency.add_metric([name], cumulative, sum_value=self.sums[name])
        yield latency
        yield GaugeMetricFamily(
            "helius_client_users", "Simulated users currently running.", value=self.users()
        )
        answers = CounterMetricFamily(
            "helius_client_answers",
            "Good /predict answers by the model (version, source, digest) and pod that served "
            "them; at most MAX_ANSWER_SERIES label sets, the rest as 'other'.",
            labels=list(traffic.ANSWER_LABELS),
        )
        for key, count in sorted(self.answers.counts.items()):
            answers.add_metric(list(key), count)
        yield answers


def _le(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(float(bound))


_metrics = ClientMetrics()
_worker: WorkerRunner | None = None  # set in a worker process (--processes, --worker)


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is None:  # Environment built by a library user, no command line
        return
    if options.shape not in ("ramp", "steps"):
        environment.shape_class = None  # steady: plain -u/-r, web UI fields usable
    runner = environment.runner
    # --processes N: Locust forks the workers of a local master (both see options.processes);
    # plain --master / --worker are separate processes (pods), each started on its own
    forked = bool(getattr(options, "processes", None))
    if isinstance(runner, WorkerRunner) and forked:
        global _worker
        _worker = runner
        _metrics.pushing = True
        runner.greenlet.spawn(_push_to_master, runner)
        return  # the master exports what its forked workers send
    if runner is not None:
        _metrics.users = lambda: float(runner.user_count)
    if isinstance(runner, MasterRunner):
        locust_runners.HEARTBEAT_LIVENESS = HEARTBEAT_LIVENESS  # read when a worker connects
        # Registered after the MasterRunner's own quitting listener (which sends "quit" to the
        # workers and waits only 0.5 s for their last reports), and quitting listeners fire in
        # reverse order: so this one runs first, and the last reports reach the CSVs.
        environment.events.quitting.add_listener(_drain_workers)
        runner.register_message(
            METRICS_MESSAGE, lambda environment, msg, **_: _metrics.merge(msg.data)
        )
        if not forked:
            return  # distributed: every worker exports its own requests
    if options.metrics_port:
        registry = CollectorRegistry(auto_describe=True)
        registry.register(_metrics)
        start_http_server(options.metrics_port, options.metrics_host, registry=registry)
        log.info(
            "client metrics on http://%s:%d/metrics", options.metrics_host, options.metrics_port
        )


def _drain_workers(environment: Environment, **_: Any) -> None:
    """Master, on quitting: stop the workers' users, then wait for their last stats report."""
    runner = environment.runner
    if isinstance(runner, MasterRunner) and runner.user_count:
        runner.stop()  # returns once every worker reported 0 users
        gevent.sleep(WORKER_REPORT_INTERVAL + 0.5)


def _push_to_master(runner: WorkerRunner) -> None:
    while True:
        gevent.sleep(METRICS_PUSH_SECONDS)
        _send_delta(runner)


def _send_delta(runner: WorkerRunner) -> None:
    delta = _metrics.take_delta()
    if delta["requests"]:
        runner.send_message(METRICS_MESSAGE, delta)


@events.report_to_master.add_listener
def _on_report_to_master(**_: Any) -> None:
    # Locust's own stats report, also sent one last time when the worker stops or quits:
    # flush our counts with it, so the master's totals include the last requests.
    if _worker is not None:
        _send_delta(_worker)


@events.request.add_listener
def _on_request(
    name: str,
    response_time: float,
    exception: BaseException | None,
    response: Any = None,
    **_: Any,
) -> None:
    status = int(getattr(response, "status_code", 0) or 0)
    _metrics.record(name, response_time / 1000.0, exception, status)


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return  # the master judges the run
    if options is not None and options.csv_prefix and runner is not None:
        # Locust rewrites its CSVs every CSV_STATS_INTERVAL_SEC and does not write them once more
        # on exit: stop the users and give the writer one more turn, so the CSVs are final (a
        # master has already waited for its workers' last reports: _drain_workers).
        runner.stop()
        gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.25)
    threshold = options.fail_ratio if options is not None else 0.01
    ratio = environment.stats.total.fail_ratio
    # Set the exit code both ways: Locust's own default (--exit-code-on-error 1) would make a
    # single failed request fail the run, which is not what --fail-ratio promises.
    if ratio > threshold:
        log.error("failure ratio %.4f above %.4f: exit code 1", ratio, threshold)
        environment.process_exit_code = 1
    else:
        environment.process_exit_code = 0


class RecoUser(HttpUser):
    """A client of the recommender: browses recommendations, sometimes pages through them."""

    host = os.environ.get("HELIUS_RECO_URL") or DEFAULT_HOST

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.timeout = (
            float(options.request_timeout)
            if options is not None
            else load_plan.DEFAULT_REQUEST_TIMEOUT_SECONDS
        )
        self.picker = traffic.UserPicker(
            known_users=int(options.known_users) if options is not None else traffic.KNOWN_USERS,
            unknown_share=(
                float(options.unknown_user_share)
                if options is not None
                else traffic.UNKNOWN_USER_SHARE
            ),
            rng=random.Random(),
        )
        self.churn = float(options.new_connection_share) if options is not None else 0.0
        self.closed_loop = bool(options.closed_loop) if options is not None else False
        target = float(options.target_rps) if options is not None else 0.0
        users = max(1, int(options.num_users or 1)) if options is not None else 1
        self.rate = target / users  # requests per second of this user; 0: think time
        self.sent = 0  # requests of the current task
        self.task_started = time.monotonic()
        if self.rate > 0:  # spread the users over one pacing period
            gevent.sleep(random.uniform(0, 1 / self.rate))
            self.task_started = time.monotonic()

    def wait_time(self) -> float:
        """Constant throughput in requests: the task's requests take `sent / rate` seconds,
        whatever part of that the answers already took (no catch-up after a slow one)."""
        if self.closed_loop:
            wait = 0.0
        elif self.rate > 0:
            wait = max(0.0, self.sent / self.rate - (time.monotonic() - self.task_started))
        else:
            wait = random.uniform(*THINK_SECONDS)
        self.sent = 0
        self.task_started = time.monotonic() + wait
        return wait

    def _after_request(self) -> None:
        self.sent += 1
        if self.churn > 0 and random.random() < self.churn:
            self.client.close()  # the next request opens a new connection

    def _predict(self, user: str, k: int, exclude: list[str]) -> list[str]:
        """One /predict; returns the item ids shown (empty on failure)."""
        body = traffic.predict_body(user, k, exclude)
        try:
            with self.client.post(
                PREDICT, json=body, name=PREDICT, timeout=self.timeout, catch_response=True
            ) as response:
                failure = _transport_failure(response) or traffic.check_status(response.status_code)
                if failure is None:
                    try:
                        payload = response.json()
                    except ValueError:
                        payload = None
                    failure = traffic.check_prediction(payload, exclude)
                if failure is not None:
                    response.failure(failure)
                    return []
                response.success()
                _metrics.answered(payload, response.headers.get(traffic.POD_HEADER))
                return [item["item_id"] for item in payload["items"]]
        finally:
            self._after_request()

    @tag("predict")
    @task(20)
    def browse(self) -> None:
        user = self.picker.pick()
        shown = self._predict(user, self.picker.pick_k(), [])
        if shown and random.random() < 0.4:  # next page: do not show these again
            self._predict(user, self.picker.pick_k(), shown)

    @tag("health")
    @task(1)
    def health(self) -> None:
        try:
            with self.client.get(
                HEALTH, name=HEALTH, timeout=self.timeout, catch_response=True
            ) as response:
                failure = _transport_failure(response) or traffic.check_status(response.status_code)
                if failure is None:
                    try:
                        failure = traffic.check_health(response.json())
                    except ValueError:
                        failure = traffic.ClientFailure("bad_content", "bad content: not JSON")
                if failure is not None:
                    response.failure(failure)
                else:
                    response.success()
        finally:
            self._after_request()


def _transport_failure(response: Any) -> traffic.ClientFailure | None:
    error = getattr(response, "error", None)
    if error is None:
        return None
    reason = traffic.classify(error, None)
    return traffic.ClientFailure(reason, "timeout" if reason == "timeout" else f"{reason} error")


def step_users(steps: str) -> list[int]:
    """`--steps "4,8,16"` -> [4, 8, 16] (each >= 1)."""
    counts = [int(part) for part in str(steps).split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise ValueError(f"--steps needs user counts >= 1, got {steps!r}")
    return counts


class HeliusShape(LoadTestShape):
    """--shape ramp: four equal steps up to -u users over --ramp-seconds, then hold until
    --run-time (or forever in the web UI). --shape steps: each user count of --steps for
    --step-seconds, then stop. Unused with the default --shape steady."""

    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner else None
        if options is None:
            return None
        run_time = self.get_run_time()
        if options.run_time and run_time >= options.run_time:
            return None
        spawn_rate = float(options.spawn_rate or 1.0)
        if options.shape == "steps":
            counts = step_users(options.steps)
            index = math.floor(run_time / max(float(options.step_seconds), 1e-9))
            if index >= len(counts):
                return None
            return counts[index], max(spawn_rate, float(counts[index]))
        target = int(options.num_users or 1)
        ramp = max(float(options.ramp_seconds), 1e-9)
        step = min(4, math.floor(run_time / (ramp / 4)) + 1)
        users = max(1, math.ceil(target * step / 4))
        return users, spawn_rate
