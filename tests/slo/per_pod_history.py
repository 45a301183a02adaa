"""A real Prometheus holding a known history of per-pod server metrics and client metrics with
`/health` beside `/predict`, for the per-pod probe and the prediction-only client SLO.

Written as OpenMetrics with explicit timestamps and served by the real `prometheus` binary
(tests/support/prom_fixture.py does the same for the other probes). Timeline (seconds after
T0, T0 an hour ago, one sample per second; a counter sample at T0 + s counts seconds 0 .. s-1):

- Server: pods `a`, `b`, `c` answer PER_POD_RATE `/predict`/s each (200, <= 25 ms) and
  HEALTH_RATE `/health`/s each (200), all through, except
- ONE_BAD [100, 160): pod `b` answers 4 % of its predictions with 500 (a status series born at
  100: its first sample counts); pod `c` is killed at 100 (its series stop) and its replacement
  `d` serves from 130 on (no baseline of its own).
- SLOW [200, 230): 3 % of pod `a`'s predictions take 0.8 s.
- CALM [240, 280): nothing happens.
- Clients over ONE_BAD: 1.5 % of `/predict` fail and take 0.8 s, `/health` (as many calls)
  all fine and fast: 0.75 % of all requests, under the 1 % and the 99th percentile.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from support.prom_fixture import PromHistory, start_prometheus  # noqa: E402

SPAN = 300
NOW = SPAN
ONE_BAD = (100, 160)
SLOW = (200, 230)
CALM = (240, 280)
KILLED, REPLACEMENT, BAD_POD, SLOW_POD = "c", "d", "b", "a"
REPLACEMENT_FROM = 130
PER_POD_RATE = 100
HEALTH_RATE = 100
BAD_EVERY = 25  # 4 %
CLIENT_PREDICT, CLIENT_PREDICT_SLOW = 200, 3  # per second in ONE_BAD: 1.5 % fail, slow
BUCKETS = ("0.025", "0.25", "1.0", "+Inf")
PODS = {"a": "zone-a", "b": "zone-b", "c": "zone-c", "d": "zone-c"}


def _alive(pod: str, s: int) -> bool:
    if pod == KILLED:
        return s <= ONE_BAD[0]
    if pod == REPLACEMENT:
        return s >= REPLACEMENT_FROM
    return True


def _server(t0: int) -> list[str]:
    requests: dict[tuple[str, str, str], list[str]] = {}
    latency: list[str] = []
    for pod, zone in PODS.items():
        counts = {("/predict", "200"): 0.0, ("/health", "200"): 0.0, ("/predict", "500"): 0.0}
        buckets = dict.fromkeys(BUCKETS, 0.0)
        total = 0.0
        base = f'app="helius-reco",pod="{pod}",zone="{zone}"'
        for s in range(SPAN):
            if not _alive(pod, s):
                continue
            for (route, status), value in counts.items():
                if status == "500" and s <= ONE_BAD[0]:
                    continue  # the 500 series is born with the first error
                labels = f'{base},route="{route}",method="POST",status="{status}"'
                requests.setdefault((pod, route, status), []).append(
                    f"reco_engine_requests_total{{{labels}}} {value} {t0 + s}"
                )
            for b in BUCKETS:
                latency.append(
                    f'reco_engine_requests_latency_seconds_bucket{{{base},route="/predict",'
                    f'le="{b}"}} {buckets[b]} {t0 + s}'
                )
            latency.append(
                f'reco_engine_requests_latency_seconds_count{{{base},route="/predict"}} '
                f"{buckets['+Inf']} {t0 + s}"
            )
            latency.append(
                f'reco_engine_requests_latency_seconds_sum{{{base},route="/predict"}} '
                f"{total} {t0 + s}"
            )
            # second s runs
            errors = PER_POD_RATE // BAD_EVERY if pod == BAD_POD and _in(ONE_BAD, s) else 0
            slow = 3 if pod == SLOW_POD and _in(SLOW, s) else 0
            counts[("/predict", "200")] += PER_POD_RATE - errors
            counts[("/predict", "500")] += errors
            counts[("/health", "200")] += HEALTH_RATE
            buckets["0.025"] += PER_POD_RATE - slow  # fast ones take 10 ms, slow ones 0.8 s
            buckets["0.25"] += PER_POD_RATE - slow
            buckets["1.0"] += PER_POD_RATE
            buckets["+Inf"] += PER_POD_RATE
            total += (PER_POD_RATE - slow) * 0.01 + slow * 0.8
    lines = ["# TYPE reco_engine_requests counter"]
    for series in requests.values():
        lines += series
    lines += ["# TYPE reco_engine_requests_latency_seconds histogram", *latency]
    return lines


def _in(span: tuple[int, int], s: int) -> bool:
    return span[0] <= s < span[1]


def _client(t0: int) -> list[str]:
    ok = {"/predict": 0.0, "/health": 0.0}
    fail = {"/predict": 0.0, "/health": 0.0}
    buckets = {name: dict.fromkeys(BUCKETS, 0.0) for name in ok}
    counters: dict[tuple[str, str], list[str]] = {}
    latency: list[str] = []
    for s in range(SPAN):
        ts = t0 + s
        for name in ok:
            counters.setdefault((name, "ok"), []).append(
                f'helius_client_requests_total{{name="{name}",outcome="success",reason="ok"}} '
                f"{ok[name]} {ts}"
            )
            counters.setdefault((name, "fail"), []).append(
                f'helius_client_requests_total{{name="{name}",outcome="failure",reason="http"}} '
                f"{fail[name]} {ts}"
            )
            for b in BUCKETS:
                latency.append(
                    f'helius_client_request_latency_seconds_bucket{{name="{name}",le="{b}"}} '
                    f"{buckets[name][b]} {ts}"
                )
        bad = CLIENT_PREDICT_SLOW if _in(ONE_BAD, s) else 0
        ok["/predict"] += CLIENT_PREDICT - bad
        fail["/predict"] += bad
        ok["/health"] += CLIENT_PREDICT
        for name, slow in (("/predict", bad), ("/health", 0)):
            buckets[name]["0.025"] += CLIENT_PREDICT - slow
            buckets[name]["0.25"] += CLIENT_PREDICT - slow
            buckets[name]["1.0"] += CLIENT_PREDICT
            buckets[name]["+Inf"] += CLIENT_PREDICT
    lines = ["# TYPE helius_client_requests counter"]
    for series in counters.values():
        lines += series
    lines += ["# TYPE helius_client_request_latency_seconds histogram", *latency]
    return lines


def openmetrics(t0: int) -> str:
    return "\n".join([*_server(t0), *_client(t0), "# EOF"]) + "\n"


def start(workdir: Path) -> tuple[subprocess.Popen[bytes], PromHistory]:
    return start_prometheus(workdir, openmetrics)
