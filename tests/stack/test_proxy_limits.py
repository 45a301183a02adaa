"""What one request may cost the local stack's request-balancing proxy (issue 17, finding 4).

The proxy runs inside the stack's daemon, with the control API, the supervisor and the fault
TTL reaper: a request must not be able to take that process's memory. A real `TcpProxy` on
port 0 (on its own event loop thread, in this process) in front of a tiny real HTTP upstream;
the client is a raw socket, so that the test controls every byte. Memory is the process's peak
RSS (`VmHWM`, reset through `/proc/self/clear_refs` before each measurement), since the proxy's
buffers are bytes objects outside any Python-level accounting a test could fake.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from chaoshelius.stack.proxy import Balancing, ProxyFault, RoundRobin, TcpProxy
from chaoshelius.topology import PathMode

MiB = 1024 * 1024
HUGE = 256 * MiB


class _Upstream(BaseHTTPRequestHandler):
    """Reads (and discards) any body in chunks, answers how many bytes it got."""

    protocol_version = "HTTP/1.1"
    received = 0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        got = 0
        if self.headers.get("Transfer-Encoding") == "chunked":
            while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                got += len(self.rfile.read(size))
                _Upstream.received = got  # what the body has brought so far
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left > 0:
                data = self.rfile.read(min(left, MiB))
                if not data:
                    break
                left -= len(data)
                got += len(data)
        body = str(got).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


class _Proxy:
    """A per-request TcpProxy on port 0, on its own event loop thread."""

    def __init__(self) -> None:
        self.upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
        self.upstream.daemon_threads = True
        threading.Thread(target=self.upstream.serve_forever, daemon=True).start()
        target = ("127.0.0.1", self.upstream.server_address[1])
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = TcpProxy(
            "reco-service", 0, RoundRobin(lambda: [target]), balancing=Balancing.REQUEST
        )
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self.loop).result(5)
        server = self.proxy._server
        assert server is not None
        self.port: int = server.sockets[0].getsockname()[1]

    def close(self) -> None:
        async def shutdown() -> None:
            await self.proxy.close()
            await asyncio.sleep(0.1)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
        self.upstream.shutdown()
        self.upstream.server_close()


@pytest.fixture
def proxy() -> Iterator[_Proxy]:
    running = _Proxy()
    yield running
    running.close()


def _peak_rss_reset() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _exchange(port: int, head: bytes, body_chunks: Iterable[bytes] = ()) -> bytes:
    """Send `head` then the chunks (stopping when the proxy stops reading), and return all
    the proxy answered, read concurrently so that an answer sent mid-body is not lost."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    answer = bytearray()

    def read() -> None:
        with_error = (ConnectionError, OSError)
        try:
            while data := sock.recv(65536):
                answer.extend(data)
        except with_error:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        sock.sendall(head)
        for chunk in body_chunks:
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
    except (ConnectionError, OSError):
        pass
    reader.join(30)
    sock.close()
    return bytes(answer)


def _zeros(total: int, chunk: int = MiB) -> Iterator[bytes]:
    block = bytes(chunk)
    while total > 0:
        yield block[: min(chunk, total)]
        total -= chunk


def _chunked(total: int, chunk: int = MiB) -> Iterator[bytes]:
    for part in _zeros(total, chunk):
        yield b"%x\r\n" % len(part) + part + b"\r\n"
    yield b"0\r\n\r\n"


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer[9:12])


def test_a_small_post_still_goes_through(proxy: _Proxy) -> None:
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
    answer = _exchange(proxy.port, head + b"hello")
    assert _status(answer) == 200 and answer.endswith(b"\r\n\r\n5")


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_256_mib_body_costs_the_proxy_no_memory(proxy: _Proxy, framing: str) -> None:
    if framing == "chunked":
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        body = _chunked(HUGE)
    else:
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % HUGE
        body = _zeros(HUGE)
    _exchange(proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")  # warm
    before = _rss()
    _peak_rss_reset()
    started = time.monotonic()
    answer = _exchange(proxy.port, head, body)
    elapsed = time.monotonic() - started
    grown = _peak_rss() - before
    print(f"{framing}: peak RSS +{grown / MiB:.1f} MiB, {elapsed:.2f} s, {answer[:12]!r}")
    assert grown < 8 * MiB, f"a {HUGE}-byte body raised the peak RSS by {grown / MiB:.0f} MiB"
    assert _status(answer) == 413
    assert b"request body is larger than" in answer


def test_a_body_under_the_cap_is_relayed_whole(proxy: _Proxy) -> None:
    size = proxy.proxy.max_body_bytes
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % size
    answer = _exchange(proxy.port, head + b"Connection: close\r\n\r\n", _zeros(size))
    assert _status(answer) == 200 and answer.endswith(b"\r\n\r\n%d" % size)


def test_too_many_headers_get_a_431(proxy: _Proxy) -> None:
    headers = b"".join(b"X-Filler-%d: a\r\n" % i for i in range(1000))
    answer = _exchange(proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    # the proxy's own answer (the upstream, Python's http.server, also refuses over 100)
    assert _status(answer) == 431 and b'{"detail": "request head' in answer


def test_a_head_over_64_kib_gets_a_431(proxy: _Proxy) -> None:
    answer = _exchange(proxy.port, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
    assert _status(answer) == 431 and b'{"detail": "request head' in answer


def test_endless_trailers_get_a_431_and_cost_no_memory(proxy: _Proxy) -> None:
    head = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n"
    )
    trailer_block = b"".join(b"X-Trailer-%d: %s\r\n" % (i, b"t" * 100) for i in range(10_000))

    def trailers() -> Iterator[bytes]:
        for _ in range(200):  # ~220 MB of trailer lines, never an empty line
            yield trailer_block
        yield b"\r\n"

    before = _rss()
    _peak_rss_reset()
    answer = _exchange(proxy.port, head, trailers())
    grown = _peak_rss() - before
    print(f"trailers: peak RSS +{grown / MiB:.1f} MiB, {answer[:12]!r}")
    assert grown < 8 * MiB, f"endless trailers raised the peak RSS by {grown / MiB:.0f} MiB"
    assert _status(answer) == 431


def _wait_for(check: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return False


def test_a_chunked_body_is_streamed_to_the_pod_as_it_comes(proxy: _Proxy) -> None:
    _Upstream.received = 0
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    sock.sendall(
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
        b"\r\n5\r\nhello\r\n"
    )
    # the first chunk reaches the pod while the client has not finished the body
    assert _wait_for(lambda: _Upstream.received == 5), "the proxy held the body back"
    sock.sendall(b"6\r\n world\r\n0\r\n\r\n")
    answer = b""
    while chunk := sock.recv(65536):  # "Connection: close": the answer ends with the connection
        answer += chunk
    sock.close()
    assert _status(answer) == 200 and answer.endswith(b"\r\n\r\n11")


def test_an_oversized_content_length_is_refused_before_the_body_is_read(proxy: _Proxy) -> None:
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (3 * MiB)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(head + b"x" * 1000)  # the rest of the body never comes
        answer = b""
        while chunk := sock.recv(65536):  # the proxy answers and closes without waiting
            answer += chunk
    assert _status(answer) == 413 and b"request body is larger than" in answer


def test_pipelined_requests_are_answered_in_turn(proxy: _Proxy) -> None:
    requests = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nz"
    )
    answer = _exchange(proxy.port, requests)
    assert answer.count(b"HTTP/1.1 200 ") == 3
    bodies = [part.split(b"\r\n", 1)[0] for part in answer.split(b"\r\n\r\n")[1:]]
    assert bodies[:3] == [b"3HTTP/1.1 200 OK", b"okHTTP/1.1 200 OK", b"1"]


def test_a_blackhole_holds_new_requests_until_it_is_lifted(proxy: _Proxy) -> None:
    def set_fault(fault: ProxyFault) -> None:
        proxy.loop.call_soon_threadsafe(proxy.proxy.set_fault, fault)

    set_fault(ProxyFault(PathMode.BLACKHOLE))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # silent: no answer, no reset
        set_fault(ProxyFault())
        sock.settimeout(5)
        assert _status(sock.recv(65536)) == 200
