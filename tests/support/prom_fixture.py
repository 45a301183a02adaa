"""A real Prometheus holding a known history, for the SLO probes.

The history is written as OpenMetrics with explicit timestamps, turned into TSDB blocks by
`promtool tsdb create-blocks-from openmetrics`, and served by the real `prometheus` binary on a
free port >= 20000. Timeline (seconds after T0, T0 an hour ago, one sample per second):

- load: 10 requests/s, all successful, latencies in the 50 ms bucket, except
- GOOD fault [100, 160): MLflow down (up=0 on [102, 163)), refresh failures born at 102 and
  growing, fallback gauge 1 on every pod on [104, 166), RecoEngineInFallback pending on
  [105, 115), firing on [115, 170), then resolved; clients unaffected.
- CALM [200, 260): nothing happens.
- BAD fault [300, 360): 30 % of requests fail and take ~0.8 s; no alert; the fallback gauge
  is 1 on [304, 366) on every pod but one, LYING_POD, which stays 0 (a max() hides it).
- HUNG fault [450, 480): clients complete only 1 request/s (all "successful"); the gauge is 1
  on [452, 458) only (cleared while the fault goes on) and GONE_POD is not scraped after 453.
- DRAIN [520, 530): zone-a is drained for two apps of one pod per zone. `spread-ok`'s zone-a
  pod is down from 521 and back (a new pod, in zone-a) at 534; `spread-lost`'s zone-a pod is
  down from 521 and its replacement comes up at 534 in zone-b: the count is back, zone-a is
  empty.

Two things a real Prometheus has that the history must get right:

- A counter sample scraped at time t counts the requests completed *before* t: the sample at
  T0 + s holds seconds 0 .. s-1, so the first sample showing a fault's requests is at its
  start + 1, and a baseline ending at the fault's start holds none of them.
- Staleness: when a series stops (an alert resolves, a target goes away) Prometheus writes a
  staleness marker and the series is gone at once. OpenMetrics cannot carry that marker, so
  this Prometheus runs with a lookback of STALE_AFTER seconds instead of 5 minutes: a series
  that stops is gone STALE_AFTER s later (the ALERTS series is absent from 175 on), where a
  5-minute lookback would keep the resolved alert "firing" over the BAD window.

Window probes are judged as of the end of the recording, T0 + NOW (their `_now` clock).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from support.ports import free_port

SPAN = 600
NOW = SPAN  # the probes' clock, in seconds after T0: the end of the recording
STALE_AFTER = 5  # seconds; a few 1 s samples, standing in for staleness markers
GOOD = (100, 160)
BAD = (300, 360)
HUNG = (450, 480)
CALM = (200, 260)
DRAIN = (520, 530)
BUCKETS = ("0.05", "0.25", "1.0", "+Inf")
PODS = {
    "helius-reco-aaaaa": "zone-a",
    "helius-reco-bbbbb": "zone-b",
    "helius-reco-ccccc": "zone-c",
    "helius-reco-ddddd": "zone-a",
}
LYING_POD = "helius-reco-ccccc"  # never reports fallback in the BAD fault
GONE_POD = "helius-reco-ddddd"  # stops being scraped 4 s into the HUNG fault


@dataclass(frozen=True)
class PromHistory:
    url: str
    t0: float

    def at(self, offset: float) -> float:
        return self.t0 + offset


def _openmetrics(t0: int) -> str:
    lines: list[str] = []
    ok = fail = 0.0
    counts = dict.fromkeys(BUCKETS, 0.0)
    total_sum = 0.0
    req_ok: list[str] = []
    req_fail: list[str] = []
    hist: list[str] = []
    for s in range(SPAN):
        ts = t0 + s
        # the sample at ts counts the requests of the seconds before it, then second s runs
        req_ok.append(
            f'helius_client_requests_total{{name="/predict",outcome="success"}} {ok} {ts}'
        )
        req_fail.append(
            f'helius_client_requests_total{{name="/predict",outcome="failure",reason="http"}} '
            f"{fail} {ts}"
        )
        for b in BUCKETS:
            hist.append(
                f'helius_client_request_latency_seconds_bucket{{name="/predict",le="{b}"}} '
                f"{counts[b]} {ts}"
            )
        hist.append(
            f'helius_client_request_latency_seconds_count{{name="/predict"}} {counts["+Inf"]} {ts}'
        )
        hist.append(
            f'helius_client_request_latency_seconds_sum{{name="/predict"}} {total_sum} {ts}'
        )
        if BAD[0] <= s < BAD[1]:
            ok += 7
            fail += 3
            # 7 fast requests (<= 50 ms), 3 slow ones (<= 1 s)
            for b, n in zip(BUCKETS, (7, 7, 10, 10), strict=True):
                counts[b] += n
            total_sum += 7 * 0.02 + 3 * 0.8
        elif HUNG[0] <= s < HUNG[1]:
            ok += 1
            for b in BUCKETS:
                counts[b] += 1
            total_sum += 0.02
        else:
            ok += 10
            for b in BUCKETS:
                counts[b] += 10
            total_sum += 10 * 0.02
    lines += ["# TYPE helius_client_requests counter", *req_ok, *req_fail]
    lines += ["# TYPE helius_client_request_latency_seconds histogram", *hist]

    lines.append("# TYPE reco_engine_in_fallback_mode gauge")
    for pod, zone in PODS.items():
        for s in range(SPAN):
            if pod == GONE_POD and s >= HUNG[0] + 4:
                break  # stopped reporting (not scraped) during the HUNG fault
            good = 104 <= s < 166
            bad = 304 <= s < 366 and pod != LYING_POD  # one pod lies during BAD
            early = HUNG[0] + 2 <= s < HUNG[0] + 8  # everyone clears early during HUNG
            v = 1 if good or bad or early else 0
            labels = f'app="helius-reco",pod="{pod}",zone="{zone}"'
            lines.append(f"reco_engine_in_fallback_mode{{{labels}}} {v} {t0 + s}")

    lines.append("# TYPE reco_engine_refresh_failures counter")
    for s in range(102, SPAN):
        v = min((s - 102) // 2 + 1, (GOOD[1] - 102) // 2 + 1)
        lines.append(f'reco_engine_refresh_failures_total{{reason="timeout"}} {v} {t0 + s}')

    lines.append("# TYPE ALERTS gauge")  # resolved at 170: no sample after (see STALE_AFTER)
    for s in range(105, 115):  # its `for:` clock: pending first, as Prometheus writes it
        lines.append(f'ALERTS{{alertname="RecoEngineInFallback",alertstate="pending"}} 1 {t0 + s}')
    for s in range(115, 170):
        lines.append(f'ALERTS{{alertname="RecoEngineInFallback",alertstate="firing"}} 1 {t0 + s}')

    # a replaced pod's counter (high, gone at 90) and its replacement's (born at 110)
    lines.append("# TYPE helius_test_replaced counter")
    for s in range(0, 90):
        lines.append(f'helius_test_replaced_total{{pod="old"}} {50 + s} {t0 + s}')
    for s in range(110, SPAN):
        lines.append(f'helius_test_replaced_total{{pod="new"}} {min(s - 109, 5)} {t0 + s}')

    lines.append("# TYPE up gauge")
    for pod, zone in (("mlflow-11111", "zone-a"), ("mlflow-22222", "zone-b")):
        for s in range(SPAN):
            v = 0 if GOOD[0] + 2 <= s < GOOD[1] + 3 else 1
            lines.append(f'up{{app="mlflow",pod="{pod}",zone="{zone}"}} {v} {t0 + s}')
    for app, comes_back_in in (("spread-ok", "zone-a"), ("spread-lost", "zone-b")):
        for zone in ("zone-a", "zone-b", "zone-c"):
            for s in range(SPAN):
                drained = zone == "zone-a" and s >= DRAIN[0] + 1
                if drained and s >= DRAIN[0] + 1 + STALE_AFTER:
                    break  # the drained pod's target is gone
                v = 0 if drained else 1
                lines.append(f'up{{app="{app}",pod="{app}-{zone}",zone="{zone}"}} {v} {t0 + s}')
        for s in range(DRAIN[1] + 4, SPAN):
            labels = f'app="{app}",pod="{app}-new",zone="{comes_back_in}"'
            lines.append(f"up{{{labels}}} 1 {t0 + s}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def binaries() -> tuple[str, str]:
    """The `prometheus` and `promtool` on PATH (the tests need the real ones)."""
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not prometheus or not promtool:
        raise RuntimeError("prometheus and promtool must be installed (apt install prometheus)")
    return prometheus, promtool


_PORTS_LOCK = threading.Lock()
_PORTS_HANDED_OUT: set[int] = set()


def launch_prometheus(
    workdir: Path, config: Path, data: Path, *extra_args: str
) -> tuple[subprocess.Popen[bytes], str]:
    """The real `prometheus` on a free port with `config` and TSDB `data`; returns once
    `/-/ready` answers. Safe to call from several threads (ports are handed out once)."""
    prometheus, _ = binaries()
    with _PORTS_LOCK:
        port = free_port()
        while port in _PORTS_HANDED_OUT:
            port = free_port()
        _PORTS_HANDED_OUT.add(port)
    with (workdir / "prometheus.log").open("wb") as log:  # the child keeps its own copy
        proc = subprocess.Popen(  # noqa: S603  argv list: the prometheus binary
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{port}",
                *extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"Prometheus did not become ready; see {workdir / 'prometheus.log'}")


def start_prometheus(
    workdir: Path, history: Callable[[int], str] | None = None
) -> tuple[subprocess.Popen[bytes], PromHistory]:
    """The real Prometheus holding `history(t0)` (OpenMetrics; this module's by default)."""
    _, promtool = binaries()
    t0 = int(time.time()) - 3600
    data = workdir / "data"
    source = workdir / "history.om"
    source.write_text((history or _openmetrics)(t0))
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
        check=True,
        capture_output=True,
    )
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n")
    proc, url = launch_prometheus(
        workdir,
        config,
        data,
        "--storage.tsdb.retention.time=30d",
        f"--query.lookback-delta={STALE_AFTER}s",
    )
    return proc, PromHistory(url, float(t0))
