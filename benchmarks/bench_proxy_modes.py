"""The service proxy's two balancing modes side by side, under the same noise.

    python benchmarks/bench_proxy_modes.py [--backends 3] [--rounds 5] [--requests 300]

Starts N real recommenders (helius_reco under uvicorn, baseline model, no MLflow) and two
TcpProxy instances over them in one asyncio thread, one per connection and one per request
(uvloop when installed, like the stack's supervisor). One keep-alive client sends
POST /predict in turn direct to a pod, through the per-connection proxy, through the
per-request proxy, with the order rotated each request, so the three see the same machine load.
Prints p50/p99 and the ratios to direct (bench_stack.py measures the per-connection mode on a
whole stack; this isolates the proxy, cold start and memory aside).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from chaoshelius.stack.proxy import Balancing, RoundRobin, TcpProxy, Upstream

BODY = {"user_id": "u0001", "k": 10}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def _recommenders(count: int) -> Iterator[list[Upstream]]:
    work = Path(tempfile.mkdtemp(prefix="helius-bench-proxy-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELIUS_", "MLFLOW_"))}
    env |= {"HELIUS_LOG_LEVEL": "WARNING"}
    processes: list[subprocess.Popen[bytes]] = []
    upstreams: list[Upstream] = []
    try:
        for i in range(count):
            port = _free_port()
            processes.append(
                subprocess.Popen(  # noqa: S603  argv list, no shell: this interpreter
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "helius_reco.main:create_app",
                        "--factory",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--log-level",
                        "warning",
                    ],
                    env=env | {"HELIUS_CACHE_DIR": str(work / f"cache-{i}")},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )  # fmt: skip
            )
            upstreams.append(("127.0.0.1", port))
        deadline = time.monotonic() + 60
        for host, port in upstreams:
            while True:
                try:
                    if httpx.get(f"http://{host}:{port}/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"recommender on {port} not ready in 60 s")
                time.sleep(0.2)
        yield upstreams
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def _proxies(upstreams: list[Upstream]) -> Iterator[dict[str, int]]:
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    proxies = {
        str(mode): TcpProxy(
            f"bench-{mode}", _free_port(), RoundRobin(lambda: upstreams), balancing=mode
        )
        for mode in (Balancing.CONNECTION, Balancing.REQUEST)
    }
    try:
        for proxy in proxies.values():
            asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(5)
        yield {mode: proxy.port for mode, proxy in proxies.items()}
    finally:
        for proxy in proxies.values():
            asyncio.run_coroutine_threadsafe(proxy.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300, help="per target per round")
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args(argv)
    with _recommenders(args.backends) as upstreams, _proxies(upstreams) as ports:
        pods = itertools.cycle([f"http://{host}:{port}/predict" for host, port in upstreams])
        targets: dict[str, Callable[[], str]] = {
            "direct": lambda: f"http://{upstreams[0][0]}:{upstreams[0][1]}/predict",
            "direct, each pod in turn": lambda: next(pods),
            "per connection": lambda: f"http://127.0.0.1:{ports['connection']}/predict",
            "per request": lambda: f"http://127.0.0.1:{ports['request']}/predict",
        }
        samples: dict[str, list[float]] = {name: [] for name in targets}
        round_ratios: dict[str, list[float]] = {name: [] for name in list(targets)[1:]}
        for _ in range(args.rounds):
            with httpx.Client(timeout=10) as client:

                def call(url: Callable[[], str], client: httpx.Client = client) -> httpx.Response:
                    return client.post(url(), json=BODY)

                calls = {name: functools.partial(call, url) for name, url in targets.items()}
                for _ in range(args.warmup):
                    for call in calls.values():
                        call()
                this_round: dict[str, list[float]] = {name: [] for name in targets}
                names = list(targets)
                for i in range(args.requests):
                    for name in names[i % len(names) :] + names[: i % len(names)]:  # rotate
                        started = time.perf_counter()
                        response = calls[name]()
                        this_round[name].append(time.perf_counter() - started)
                        if response.status_code != 200:
                            raise RuntimeError(f"{name}: HTTP {response.status_code}")
            for name, values in this_round.items():
                samples[name] += values
            for name in round_ratios:
                round_ratios[name].append(
                    statistics.median(this_round[name]) / statistics.median(this_round["direct"])
                )
    d50, d99 = _percentile(samples["direct"], 0.5), _percentile(samples["direct"], 0.99)
    print(f"{args.backends} recommenders, {args.rounds} x {args.requests} requests per target, "
          f"keep-alive, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    print(f"{'target':<26} {'p50 ms':>8} {'p99 ms':>8} {'p50/direct':>11} {'p99/direct':>11}")
    for name, values in samples.items():
        p50, p99 = _percentile(values, 0.5), _percentile(values, 0.99)
        print(f"{name:<26} {p50 * 1000:8.3f} {p99 * 1000:8.3f} {p50 / d50:11.3f} {p99 / d99:11.3f}")
    for name, ratios in round_ratios.items():
        print(f"per-round p50 ratio, {name}: {', '.join(f'{r:.3f}' for r in ratios)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
