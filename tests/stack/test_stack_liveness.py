"""The supervisor's liveness probing, like the kubelet's: real child processes, real HTTP.

A tiny pod (a standard-library HTTP server) answers /ready 200 and /health 200 until a flag
file exists, then /health 500. With period 0.2 s and threshold 3 the supervisor must restart
it (a new pod name, the slot's restart count up) about 0.6 s after the flag, and never while
/health answers 200.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from chaoshelius.stack.supervisor import Pod, PodSpec, Supervisor
from chaoshelius.topology import App, Probe

SERVER = """
import http.server, os, sys
flag = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        bad = self.path == "/health" and os.path.exists(flag)
        self.send_response(500 if bad else 200); self.end_headers(); self.wfile.write(b"x")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def _supervisor(tmp_path: Path, flag: Path, liveness: Probe | None) -> Supervisor:
    spec = PodSpec(
        App.RECO,
        lambda pod: [sys.executable, "-c", SERVER, str(pod.port), str(flag)],
        lambda pod: {},
        "/ready",
        liveness,
    )
    supervisor = Supervisor(
        {App.RECO: spec},
        {App.RECO: lambda index: "zone-a"},
        {App.RECO: 1},
        list(range(29500, 29520)),
        tmp_path / "logs",
        tmp_path / "run",
        replace_delay=0.1,
    )
    supervisor.enabled.add(App.RECO)
    return supervisor


async def _watch(supervisor: Supervisor, flag: Path, seconds: float) -> tuple[list[str], int]:
    runner = asyncio.create_task(supervisor.run())
    names: list[str] = []
    try:
        for _ in range(200):  # first pod ready
            await asyncio.sleep(0.05)
            if any(p.ready for p in supervisor.pods()):
                break
        names.append(supervisor.pods()[0].name)
        flag.touch()
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
            pods: list[Pod] = supervisor.pods()
            if pods and pods[0].name not in names:
                names.append(pods[0].name)
        return names, supervisor.slots[App.RECO][0].restarts
    finally:
        runner.cancel()
        await supervisor.shutdown()


def test_a_pod_failing_liveness_is_restarted(tmp_path: Path) -> None:
    flag = tmp_path / "unhealthy"
    supervisor = _supervisor(tmp_path, flag, Probe("/health", 0.2, 3, 1.0))
    names, restarts = asyncio.run(_watch(supervisor, flag, 3.0))
    assert len(names) >= 2 and restarts >= 1, (names, restarts)


def test_without_a_liveness_probe_nothing_restarts_it(tmp_path: Path) -> None:
    flag = tmp_path / "unhealthy"
    supervisor = _supervisor(tmp_path, flag, None)
    names, restarts = asyncio.run(_watch(supervisor, flag, 2.0))
    assert names == names[:1] and restarts == 0


def test_a_healthy_pod_is_never_restarted(tmp_path: Path) -> None:
    # the pod watches a flag nobody creates; the test touches an unrelated file
    supervisor = _supervisor(tmp_path, tmp_path / "other", Probe("/health", 0.2, 3, 1.0))
    names, restarts = asyncio.run(_watch(supervisor, tmp_path / "unrelated", 2.0))
    assert names == names[:1] and restarts == 0
