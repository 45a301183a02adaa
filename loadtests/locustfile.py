"""Helius load: realistic `/predict` traffic plus a client-side Prometheus exporter.

On its own, web UI included:

    locust -f loadtests/locustfile.py --host http://127.0.0.1:17080

Headless, as the chaos experiments start it (chaoshelius.load.actions.start_load):

    python -m locust -f loadtests/locustfile.py --headless -u 20 -r 10 --run-time 300s \\
        --host http://127.0.0.1:17080 --metrics-port 17089 --csv reports/runs/latest/locust

Traffic: each simulated client browses as a user drawn from a Zipf-skewed distribution over the
service's training users (a few unknown users take the cold-start path), asks for k in
{5, 10, 20} items, and often asks for the "next page" excluding what it was just shown. Every
answer is checked for content, not only status (see helius_traffic.check_prediction).

Client-side metrics on http://<metrics-host>:<metrics-port>/metrics, counted from Locust's
`request` event, so every request is seen, whatever its fate:
    helius_client_requests_total{name, outcome="success"|"failure", reason}
    helius_client_request_latency_seconds{name}   (histogram, 1 ms .. 10 s)
    helius_client_users                           (gauge, running simulated users)

Exit code: 1 when the failure ratio over the run exceeds --fail-ratio (default 0.01).
Shapes: --shape steady (constant -u users, the default) or --shape ramp (steps up to -u over
--ramp-seconds, then holds).
"""

from __future__ import annotations

import logging
import math
import random
from typing import Any

import gevent
import helius_traffic as traffic
from locust import HttpUser, LoadTestShape, between, events, task
from locust.env import Environment
from locust.stats import CSV_STATS_INTERVAL_SEC
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

log = logging.getLogger("helius.load")
disable_created_metrics()  # no *_created series: this process exists only to make load

PREDICT = "/predict"
HEALTH = "/health"
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
    group.add_argument(
        "--metrics-port",
        type=int,
        default=17089,
        help="Port of the client-side Prometheus exporter (0: do not export).",
    )
    group.add_argument("--metrics-host", default="127.0.0.1", help="Address the exporter binds to.")
    group.add_argument(
        "--fail-ratio",
        type=float,
        default=0.01,
        help="Exit with code 1 when the run's failure ratio exceeds this.",
    )
    group.add_argument(
        "--shape",
        choices=("steady", "ramp"),
        default="steady",
        help="steady: constant -u users; ramp: step up to -u over --ramp-seconds, then hold.",
    )
    group.add_argument("--ramp-seconds", type=float, default=60.0, help="Length of the ramp.")
    group.add_argument(
        "--request-timeout",
        type=float,
        default=5.0,
        help="Client timeout per request, seconds; a hung server shows as 'timeout' failures.",
    )
    group.add_argument(
        "--known-users",
        type=int,
        default=traffic.KNOWN_USERS,
        help="Users u0000.. in the service's training set (the skewed draw's support).",
    )
    group.add_argument(
        "--unknown-user-share",
        type=float,
        default=traffic.UNKNOWN_USER_SHARE,
        help="Share of requests for users the model never saw (cold-start path).",
    )


class _Exporter:
    """The client-side metrics, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "helius_client_requests",
            "Requests sent by the load generator, by outcome and failure reason.",
            ["name", "outcome", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "helius_client_request_latency_seconds",
            "Latency seen by the load generator (failures included), seconds.",
            ["name"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.users = Gauge(
            "helius_client_users", "Simulated users currently running.", registry=self.registry
        )
        # Series exist (at 0) before the first request, so ratios and increase() have data.
        for name in (PREDICT, HEALTH):
            self.requests.labels(name, "success", traffic.REASON_OK)
            for reason in traffic.REASONS[1:]:
                self.requests.labels(name, "failure", reason)
            self.latency.labels(name)

    def record(
        self, name: str, seconds: float, exception: BaseException | None, status: int
    ) -> None:
        reason = traffic.classify(exception, status)
        outcome = "success" if exception is None else "failure"
        self.requests.labels(name, outcome, reason).inc()
        self.latency.labels(name).observe(seconds)


_exporter = _Exporter()


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is None:  # Environment built by a library user, no command line
        return
    if options.shape != "ramp":
        environment.shape_class = None  # steady: plain -u/-r, web UI fields usable
    if environment.runner is not None:
        runner = environment.runner
        _exporter.users.set_function(lambda: float(runner.user_count))
    if options.metrics_port and not options.master:
        start_http_server(options.metrics_port, options.metrics_host, registry=_exporter.registry)
        log.info(
            "client metrics on http://%s:%d/metrics", options.metrics_host, options.metrics_port
        )


@events.request.add_listener
def _on_request(
    name: str,
    response_time: float,
    exception: BaseException | None,
    response: Any = None,
    **_: Any,
) -> None:
    status = int(getattr(response, "status_code", 0) or 0)
    _exporter.record(name, response_time / 1000.0, exception, status)


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    runner = environment.runner
    if options is not None and options.csv_prefix and runner is not None:
        # Locust rewrites its CSVs every CSV_STATS_INTERVAL_SEC and does not write them once more
        # on exit: stop the users and give the writer one more turn, so the CSVs are final.
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

    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.timeout = options.request_timeout if options is not None else 5.0
        self.picker = traffic.UserPicker(
            known_users=options.known_users if options is not None else traffic.KNOWN_USERS,
            unknown_share=(
                options.unknown_user_share if options is not None else traffic.UNKNOWN_USER_SHARE
            ),
            rng=random.Random(),
        )

    def _predict(self, user: str, k: int, exclude: list[str]) -> list[str]:
        """One /predict; returns the item ids shown (empty on failure)."""
        body = traffic.predict_body(user, k, exclude)
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
            return [item["item_id"] for item in payload["items"]]

    @task(20)
    def browse(self) -> None:
        user = self.picker.pick()
        shown = self._predict(user, self.picker.pick_k(), [])
        if shown and random.random() < 0.4:  # next page: do not show these again
            self._predict(user, self.picker.pick_k(), shown)

    @task(1)
    def health(self) -> None:
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


def _transport_failure(response: Any) -> traffic.ClientFailure | None:
    error = getattr(response, "error", None)
    if error is None:
        return None
    reason = traffic.classify(error, None)
    return traffic.ClientFailure(reason, "timeout" if reason == "timeout" else f"{reason} error")


class RampShape(LoadTestShape):
    """--shape ramp: four equal steps up to -u users over --ramp-seconds, then hold until
    --run-time (or forever in the web UI). Unused with the default --shape steady."""

    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner else None
        if options is None:
            return None
        run_time = self.get_run_time()
        if options.run_time and run_time >= options.run_time:
            return None
        target = int(options.num_users or 1)
        ramp = max(float(options.ramp_seconds), 1e-9)
        step = min(4, math.floor(run_time / (ramp / 4)) + 1)
        users = max(1, math.ceil(target * step / 4))
        return users, float(options.spawn_rate or 1.0)
