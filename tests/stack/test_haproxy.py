"""The recommender service's per-request balancer: real HAProxy over real pod processes.

Each test starts `HaproxyBalancer` (HAProxy as a child process, its membership pushed over the
runtime socket) on its own event loop thread, in front of small HTTP/1.1 keep-alive servers,
each a process of its own (so a pod can be SIGKILLed); the client is `http.client` or a raw
socket, so that the test controls every byte. Membership changes are pushed with `sync()`, as
the daemon's change hook does.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.ports import free_port

from chaoshelius.stack import haproxy
from chaoshelius.stack.errors import StackError
from chaoshelius.stack.haproxy import HaproxyBalancer, SlotState, plan
from chaoshelius.stack.procs import pid_alive, wait_until
from chaoshelius.stack.proxy import Upstream

pytestmark = pytest.mark.skipif(
    shutil.which("haproxy") is None, reason="haproxy is not installed (apt-get install haproxy)"
)

MiB = 1024 * 1024

_POD = r"""
import json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, name = int(sys.argv[1]), sys.argv[2]
stats = {"connections": 0, "received": 0}

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        stats["connections"] += 1

    def _answer(self, body, status=200):
        self.send_response(status)
        self.send_header("X-Pod", name)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/stats":
            self._answer(json.dumps(stats).encode())
        elif self.path == "/slow":
            time.sleep(2)
            self._answer(name.encode())
        else:
            self._answer(name.encode())

    def do_POST(self):
        got = 0
        stats["received"] = 0
        if self.headers.get("Transfer-Encoding") == "chunked":
            while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                got += len(self.rfile.read(size))
                stats["received"] = got
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left > 0:
                data = self.rfile.read(min(left, 1 << 20))
                if not data:
                    break
                left -= len(data)
                got += len(data)
        self._answer(json.dumps({"pod": name, "received": got}).encode())

server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
"""


class Pod:
    """One pod: an HTTP/1.1 keep-alive server in a process of its own."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        self.process = subprocess.Popen(  # noqa: S603  this interpreter, the script above
            [sys.executable, "-c", _POD, str(self.port), name],
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None and self.process.stdout.readline() == b"ready\n"

    @property
    def upstream(self) -> Upstream:
        return ("127.0.0.1", self.port)

    def stats(self) -> dict[str, int]:
        """What the pod counted (this call is one connection of its own)."""
        conn = http.client.HTTPConnection(*self.upstream, timeout=5)
        conn.request("GET", "/stats")
        data: dict[str, int] = json.loads(conn.getresponse().read())
        conn.close()
        return data

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill()
        if self.process.stdout is not None:
            self.process.stdout.close()


class Harness:
    """A HaproxyBalancer on its own event loop thread, over a mutable list of ready pods."""

    def __init__(self, ready: list[Pod]) -> None:
        self.ready = ready
        # a short directory: the runtime socket's path must fit in sun_path
        self.dir = Path(tempfile.mkdtemp(prefix="hap-"))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.balancer = HaproxyBalancer(
            "reco-service",
            free_port(),
            lambda: [pod.upstream for pod in self.ready],
            self.dir,
            self.dir / "haproxy.log",
        )
        self.call(self.balancer.start())

    def call(self, coro: Any, timeout: float = 15) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def sync(self) -> None:
        """Push the membership now (the daemon's change hook does this on every change)."""
        self.call(self.balancer.sync())

    def slots(self) -> list[SlotState]:
        result: list[SlotState] = self.call(self.balancer.api.slots())
        return result

    @property
    def port(self) -> int:
        return self.balancer.port

    def client(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def close(self) -> None:
        self.call(self.balancer.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def pods() -> Iterator[list[Pod]]:
    started = [Pod(f"pod-{i}") for i in range(4)]
    yield started
    for pod in started:
        pod.stop()


@pytest.fixture
def balancer(pods: list[Pod]) -> Iterator[Harness]:
    harness = Harness(list(pods[:3]))
    yield harness
    harness.close()


def _pods_seen(
    client: http.client.HTTPConnection, count: int, path: str = "/predict"
) -> Counter[str]:
    """`count` keep-alive requests on one connection; which pod answered each (all 200)."""
    seen: Counter[str] = Counter()
    for i in range(count):
        client.request("POST", path, body=json.dumps({"i": i}).encode())
        response = client.getresponse()
        body = response.read()
        assert response.status == 200, body
        seen[response.getheader("X-Pod") or "?"] += 1
    return seen


def _exchange(port: int, head: bytes, body_chunks: Iterable[bytes] = ()) -> bytes:
    """Send `head` then the chunks (stopping when the proxy stops reading), and return all
    the proxy answered, read concurrently so that an answer sent mid-body is not lost."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    answer = bytearray()

    def read() -> None:
        try:
            while data := sock.recv(65536):
                answer.extend(data)
        except OSError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        sock.sendall(head)
        for chunk in body_chunks:
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    reader.join(30)
    sock.close()
    return bytes(answer)


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer[9:12])


def _zeros(total: int, chunk: int = MiB) -> Iterator[bytes]:
    block = bytes(chunk)
    while total > 0:
        yield block[: min(chunk, total)]
        total -= chunk


def _chunked(total: int, chunk: int = MiB) -> Iterator[bytes]:
    for part in _zeros(total, chunk):
        yield b"%x\r\n" % len(part) + part + b"\r\n"
    yield b"0\r\n\r\n"


# -- balancing and membership -------------------------------------------------------------------
def test_round_robin_over_the_ready_pods_on_kept_alive_pod_connections(
    balancer: Harness, pods: list[Pod]
) -> None:
    before = pods[0].stats()["connections"]
    client = balancer.client()
    assert _pods_seen(client, 30) == {"pod-0": 10, "pod-1": 10, "pod-2": 10}
    client.close()
    fresh = balancer.client()  # another client connection reuses the kept-alive pod ones
    assert _pods_seen(fresh, 3) == {"pod-0": 1, "pod-1": 1, "pod-2": 1}
    fresh.close()
    assert pods[0].stats()["connections"] - before == 2  # HAProxy's one, and stats()'s own
    assert pods[3].stats()["connections"] == 1  # never in the membership: only stats() came


def test_a_removed_pod_gets_no_more_requests_and_an_added_one_does(
    balancer: Harness, pods: list[Pod]
) -> None:
    client = balancer.client()
    assert set(_pods_seen(client, 6)) == {"pod-0", "pod-1", "pod-2"}
    balancer.ready.remove(pods[1])  # pod-1 turns unready
    balancer.sync()
    seen = _pods_seen(client, 30)
    assert seen == {"pod-0": 15, "pod-2": 15}

    balancer.ready.append(pods[3])  # a replacement pod becomes ready
    balancer.sync()
    assert _pods_seen(client, 30) == {"pod-0": 10, "pod-2": 10, "pod-3": 10}
    serving = {(s.port, s.slot) for s in balancer.slots() if s.serving}
    assert {port for port, _ in serving} == {pods[0].port, pods[2].port, pods[3].port}
    client.close()


def test_the_change_hook_pushes_the_membership_without_a_direct_sync(
    balancer: Harness, pods: list[Pod]
) -> None:
    balancer.ready[:] = [pods[3]]
    balancer.loop.call_soon_threadsafe(balancer.balancer.changed)
    assert wait_until(
        lambda: {s.port for s in balancer.slots() if s.serving} == {pods[3].port}, 2.0, 0.01
    )
    client = balancer.client()
    assert _pods_seen(client, 4) == {"pod-3": 4}
    client.close()


def test_the_change_hook_has_pushed_the_membership_when_it_returns(
    balancer: Harness, pods: list[Pod]
) -> None:
    """A pod the stack kills is out of the rotation before the kill is answered: the hook
    pushes at once, not from the loop a moment later."""

    async def change_then_look() -> set[int]:
        balancer.ready[:] = [pods[0], pods[3]]
        balancer.balancer.changed()  # no await after it: the sync loop has not run
        state = balancer.balancer.api.ask_now(f"show servers state {haproxy.BACKEND}")
        return {s.port for s in haproxy.parse_servers_state(state) if s.serving}

    assert balancer.call(change_then_look()) == {pods[0].port, pods[3].port}


def test_no_ready_pod_gets_a_503(balancer: Harness) -> None:
    balancer.ready.clear()
    balancer.sync()
    answer = _exchange(
        balancer.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert _status(answer) == 503
    assert json.loads(body) == {"detail": "no ready upstream pod"}


def test_a_killed_pod_still_in_the_membership_costs_no_client_error(
    balancer: Harness, pods: list[Pod]
) -> None:
    client = balancer.client()
    assert set(_pods_seen(client, 6)) == {"pod-0", "pod-1", "pod-2"}
    pods[1].kill()  # refused from now on; the membership still names it
    assert _pods_seen(client, 30) == {"pod-0": 15, "pod-2": 15}
    client.close()


def test_a_pod_killed_while_it_holds_a_request_is_retried_on_another(
    balancer: Harness, pods: list[Pod]
) -> None:
    balancer.ready[:] = [pods[0]]
    balancer.sync()
    client = balancer.client()
    client.request("GET", "/slow")  # pod-0 sleeps 2 s on it
    time.sleep(0.5)
    balancer.ready[:] = [pods[0], pods[1]]  # pod-1 ready, then pod-0 dies with the request
    balancer.sync()
    pods[0].kill()
    response = client.getresponse()
    assert response.status == 200 and response.read() == b"pod-1"
    client.close()


# -- bounded inputs -----------------------------------------------------------------------------
def test_a_content_length_over_2_mib_is_refused_before_the_body_is_read(balancer: Harness) -> None:
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (3 * MiB)
    with socket.create_connection(("127.0.0.1", balancer.port), timeout=5) as sock:
        sock.sendall(head + b"x" * 1000)  # the rest of the body never comes
        answer = b""
        while chunk := sock.recv(65536):  # answered and closed without waiting for it
            answer += chunk
    assert _status(answer) == 413 and b"request body is larger than the 2097152-byte" in answer


def test_a_body_of_exactly_2_mib_is_streamed_to_the_pod_whole(balancer: Harness) -> None:
    size = haproxy.MAX_REQUEST_BODY_BYTES
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
    answer = _exchange(balancer.port, head % size, _zeros(size))
    assert _status(answer) == 200
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["received"] == size


def test_a_chunked_body_is_streamed_to_the_pod_as_it_comes(
    balancer: Harness, pods: list[Pod]
) -> None:
    balancer.ready[:] = [pods[0]]
    balancer.sync()
    sock = socket.create_connection(("127.0.0.1", balancer.port), timeout=10)
    sock.sendall(
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
        b"\r\n5\r\nhello\r\n"
    )
    # the first chunk reaches the pod while the client has not finished the body
    assert wait_until(lambda: pods[0].stats()["received"] == 5, 5.0, 0.02)
    sock.sendall(b"6\r\n world\r\n0\r\n\r\n")
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    assert _status(answer) == 200
    assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {"pod": "pod-0", "received": 11}


def test_a_chunked_body_over_the_cap_reaches_the_pod_through_a_bounded_buffer(
    balancer: Harness,
) -> None:
    """HAProxy 2.6 cannot count a streamed body: a chunked one goes on to the pod, whose own
    limit answers (the recommender's 413 past 1 MiB); HAProxy holds a buffer of it at most."""
    pid = balancer.balancer.pid
    assert pid is not None
    head = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n"
    )
    answer = _exchange(balancer.port, head, _chunked(64 * MiB))
    assert _status(answer) == 200
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["received"] == 64 * MiB
    peak = next(
        int(line.split()[1]) * 1024
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmHWM:")
    )
    assert peak < 48 * MiB, f"HAProxy's peak RSS {peak / MiB:.0f} MiB after a 64 MiB body"


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-F-%d: a\r\n" % i for i in range(101))
        + b"\r\n",
    ],
    ids=["head-over-64-kib", "101-header-lines"],
)
def test_an_oversized_head_gets_haproxys_400(balancer: Harness, head: bytes) -> None:
    answer = _exchange(balancer.port, head)
    assert _status(answer) == 400 and b"Connection: close" in answer


def test_a_head_under_the_bound_goes_through(balancer: Harness) -> None:
    filler = b"a" * (haproxy.MAX_HEAD_BYTES - 2048)
    head = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " + filler + b"\r\n\r\n"
    assert _status(_exchange(balancer.port, head)) == 200
    lines = b"".join(b"X-F-%d: a\r\n" % i for i in range(98))  # 100 with Host and Connection
    head = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + lines + b"\r\n"
    assert _status(_exchange(balancer.port, head)) == 200


@pytest.mark.parametrize(
    "head",
    [
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n",
    ],
    ids=["websocket", "h2c", "connect"],
)
def test_upgrades_and_connect_are_refused(balancer: Harness, pods: list[Pod], head: bytes) -> None:
    before = [pod.stats()["connections"] for pod in pods[:3]]
    with socket.create_connection(("127.0.0.1", balancer.port), timeout=5) as sock:
        sock.sendall(head)
        answer = sock.recv(65536)
    assert _status(answer) == 400
    assert b"protocol upgrades and CONNECT are not served" in answer
    # no pod saw it (each stats() call is one connection of its own)
    assert [pod.stats()["connections"] for pod in pods[:3]] == [n + 1 for n in before]


# -- the process and its files ------------------------------------------------------------------
def test_the_runtime_socket_and_the_config_are_the_owners_only(balancer: Harness) -> None:
    socket_mode = balancer.balancer.socket_path.stat().st_mode
    assert stat.S_ISSOCK(socket_mode) and stat.S_IMODE(socket_mode) == 0o600
    assert stat.S_IMODE(balancer.balancer.config_path.stat().st_mode) == 0o600
    assert balancer.balancer.socket_path.stat().st_uid == os.getuid()


def test_haproxy_is_started_again_when_it_dies(balancer: Harness, pods: list[Pod]) -> None:
    old = balancer.balancer.pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    assert wait_until(lambda: balancer.balancer.pid not in (None, old), 5.0, 0.02)

    def serving() -> int:
        try:
            return len([s for s in balancer.slots() if s.serving])
        except OSError:  # the new one's socket is not there yet
            return 0

    assert wait_until(lambda: serving() == 3, 5.0, 0.05)
    client = balancer.client()
    assert _pods_seen(client, 3) == {"pod-0": 1, "pod-1": 1, "pod-2": 1}
    client.close()
    assert balancer.balancer.restarts == 1


_DAEMON = r"""
import asyncio, sys
from pathlib import Path
from chaoshelius.stack.haproxy import HaproxyBalancer

async def main():
    run = Path(sys.argv[1])
    balancer = HaproxyBalancer("svc", int(sys.argv[2]), lambda: [], run, run / "haproxy.log")
    await balancer.start()
    print(balancer.pid, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def test_haproxy_dies_with_the_process_that_started_it() -> None:
    run = Path(tempfile.mkdtemp(prefix="hap-"))
    daemon = subprocess.Popen(  # noqa: S603  this interpreter, the script above
        [sys.executable, "-c", _DAEMON, str(run), str(free_port())], stdout=subprocess.PIPE
    )
    try:
        assert daemon.stdout is not None
        pid = int(daemon.stdout.readline())
        assert pid_alive(pid)
        daemon.send_signal(signal.SIGKILL)  # no teardown runs
        daemon.wait(10)
        assert wait_until(lambda: not pid_alive(pid), 5.0, 0.02), "HAProxy outlived its parent"
    finally:
        daemon.kill()
        daemon.wait(10)
        if daemon.stdout is not None:
            daemon.stdout.close()
        shutil.rmtree(run, ignore_errors=True)


def test_a_missing_haproxy_is_a_one_line_error_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv(haproxy.BIN_ENV, str(tmp_path / "haproxy"))  # not there
    with pytest.raises(StackError) as error:
        haproxy.find_binary()
    message = str(error.value)
    assert "\n" not in message and "apt-get install haproxy" in message


def test_the_plan_keeps_serving_pods_on_their_slots_and_reuses_a_freed_slot_last() -> None:
    current = [
        SlotState(1, "127.0.0.1", 1001, serving=True, idle_seconds=50),
        SlotState(2, "127.0.0.1", 1002, serving=True, idle_seconds=40),
        SlotState(3, "127.0.0.1", 1, serving=False, idle_seconds=10),
        SlotState(4, "127.0.0.1", 1, serving=False, idle_seconds=90),
    ]
    commands = plan(current, [("127.0.0.1", 1002), ("127.0.0.1", 1003), ("127.0.0.1", 1004)])
    assert commands == [
        "set server pods/slot1 state maint",
        "set server pods/slot4 addr 127.0.0.1 port 1003",
        "set server pods/slot4 state ready",
        "set server pods/slot3 addr 127.0.0.1 port 1004",
        "set server pods/slot3 state ready",
    ]
    assert plan(current[:2], [("127.0.0.1", 1001), ("127.0.0.1", 1002)]) == []
    with pytest.raises(ValueError):
        plan(current, [("127.0.0.1; shutdown sessions", 1)])


@pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("setpriv") and shutil.which("prlimit")),
    reason="needs root (to become nobody), setpriv and prlimit",
)
def test_the_generated_config_serves_as_a_non_root_user_with_few_open_files() -> None:
    """As `nobody`, with an open-file limit of 1024 HAProxy may not raise: it starts, its
    runtime socket is nobody's and 0600, and the service answers (503: no pod yet)."""
    run = Path(tempfile.mkdtemp(prefix="hap-"))
    run.chmod(0o777)
    port = free_port()
    config = run / "haproxy.cfg"
    config.write_text(haproxy.render_config(port, run / "haproxy.sock"))
    config.chmod(0o644)
    process = subprocess.Popen(  # noqa: S603  fixed argv: setpriv, prlimit, haproxy
        [
            *("prlimit", "--nofile=1024:1024", "--"),
            *("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"),
            *(haproxy.find_binary(), "-db", "-f", str(config)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        sock = run / "haproxy.sock"
        assert wait_until(sock.exists, 5.0, 0.02), process.stdout and process.stdout.read1()
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600 and sock.stat().st_uid != 0
        answer = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert _status(answer) == 503
    finally:
        process.kill()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
        shutil.rmtree(run, ignore_errors=True)
