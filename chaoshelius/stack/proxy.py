"""TCP proxies on asyncio: path proxies (faults on an edge) and service proxies (round-robin).

A path proxy forwards to one upstream and can be switched, at run time, into a fault mode:

- `blackhole`: bytes stop flowing both ways, on new and established connections, without RST
  or FIN (a partition / a NetworkPolicy drop). Clients hang until their own timeouts. When the
  fault is lifted, held data flows again, like TCP retransmission after a partition heals.
- `reset`: established connections are reset (RST) and new ones are reset on accept.
- `latency`: each chunk is delayed by `latency_ms` in each direction.

A service proxy is the same machine with an upstream picker that round-robins over the ready
pods of an app. It balances in one of two ways (`Balancing`):

- `connection` (kube-proxy, L4): each client connection goes to one pod for its whole life.
  A keep-alive client stays on its pod even when that pod turns unready, and a replacement pod
  gets only new connections. With no ready pod a new connection is reset, the local
  equivalent of "connection refused".
- `request` (an ingress, L7, HTTP/1.1 only): httptools (llhttp, the parser uvicorn uses;
  see `proxy_http`) reads each request; the proxy picks a ready pod for every request and
  streams the body on as it comes (Content-Length, or chunked), then streams the answer back
  (Content-Length, chunked, or until the pod closes). A request that can go at once (a
  kept-alive connection to the picked pod) is written on in the loop callback that read it;
  connecting, and waiting out a `blackhole`, is left to a task. Pipelined requests are served
  in turn. Upstream connections are kept alive per client connection and pod. With no ready
  pod the client gets `503` (and the connection is closed), as from an ingress with no
  endpoints. A pod that refuses the connection, or a kept-alive upstream connection the pod
  had closed, is retried on another pick (a request is kept for that while it is under 64
  KiB; past that, or from a pod that takes the request and closes without answering, `502`);
  a pod that dies mid-answer resets the client connection. `reset` resets the connections.

  What one request may cost the process (the stack's daemon, which also runs the control API,
  the supervisor and the fault TTL reaper) is bounded: reading stops while what was read
  cannot be sent on, so the proxy holds about one read per connection and the head being
  parsed. A request body over `max_body_bytes` (default 2 MiB, twice the service's own 1 MiB
  limit, so the service's 413 still answers the bodies in between) gets `413` as soon as that
  is known (from `Content-Length` before the body is read, or by counting the chunks' data),
  and the connection is closed; heads and trailers over `proxy_http.MAX_HEADERS` lines or 64
  KiB get `431`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import socket
import struct
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

from chaoshelius.stack.proxy_http import (
    BAD_GATEWAY,
    NO_UPSTREAM,
    HttpError,
    RequestHead,
    RequestParser,
    ResponseParser,
    TooLarge,
    closing,
)
from chaoshelius.topology import PathMode

_CHUNK = 65536
MAX_REQUEST_BODY_BYTES = 2 * 1024 * 1024  # per-request balancing answers 413 past this
_PICK_ATTEMPTS = 3
Upstream = tuple[str, int]
_Conn = tuple[asyncio.BaseTransport, asyncio.BaseTransport | None]  # client side, pod side


class Balancing(StrEnum):
    CONNECTION = "connection"
    REQUEST = "request"


@dataclass(frozen=True)
class ProxyFault:
    mode: PathMode | None = None  # None: passing through
    latency_ms: int = 0

    @property
    def status(self) -> str:
        """The mode as the stack's status shows it (`normal` when passing through)."""
        return "normal" if self.mode is None else str(self.mode)


def _reset(transport: asyncio.BaseTransport) -> None:
    """Close with RST (SO_LINGER 0) instead of FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


def _nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class RoundRobin:
    """Picks the next upstream among those `candidates()` returns (None if there are none)."""

    def __init__(self, candidates: Callable[[], Sequence[Upstream]]) -> None:
        self._candidates = candidates
        self._counter = itertools.count()

    def __call__(self) -> Upstream | None:
        upstreams = list(self._candidates())
        if not upstreams:
            return None
        return upstreams[next(self._counter) % len(upstreams)]


class TcpProxy:
    """Listen on host:port and forward each connection to `pick()`'s upstream."""

    def __init__(
        self,
        name: str,
        port: int,
        pick: Callable[[], Upstream | None],
        host: str = "127.0.0.1",
        balancing: Balancing = Balancing.CONNECTION,
        max_body_bytes: int = MAX_REQUEST_BODY_BYTES,
    ) -> None:
        self.name = name
        self.max_body_bytes = max_body_bytes
        self.host = host
        self.port = port
        self.pick = pick
        self.balancing = Balancing(balancing)
        self.requests_total = 0
        self.fault = ProxyFault()
        self._flowing = asyncio.Event()
        self._flowing.set()
        # set whenever the fault changes: a chunk held by `latency` is released at once when
        # the fault is lifted (restore or TTL), instead of after its full delay
        self._fault_changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections_total = 0

    async def start(self) -> None:
        if self.balancing is Balancing.REQUEST:
            self._server = await asyncio.get_running_loop().create_server(
                lambda: _Client(self), self.host, self.port, reuse_address=True, backlog=1024
            )
        else:
            self._server = await asyncio.start_server(
                self._handle, self.host, self.port, reuse_address=True, backlog=1024
            )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._flowing.set()
        for client, upstream in list(self._conns):
            client.abort()  # type: ignore[attr-defined]
            if upstream is not None:
                upstream.abort()  # type: ignore[attr-defined]
        for task in list(self._tasks):
            task.cancel()

    def set_fault(self, fault: ProxyFault) -> None:
        """Switch mode; `reset` also resets the connections already open."""
        self.fault = fault
        self._fault_changed.set()
        self._fault_changed = asyncio.Event()
        if fault.mode is PathMode.BLACKHOLE:
            self._flowing.clear()
        else:
            self._flowing.set()
        if fault.mode is PathMode.RESET:
            for client, upstream in list(self._conns):
                _reset(client)
                if upstream is not None:
                    _reset(upstream)

    def clear_fault(self) -> None:
        self.set_fault(ProxyFault())

    def _resetting(self) -> bool:
        return self.fault.mode is PathMode.RESET

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    def _spawn(self, work: Callable[[], Coroutine[None, None, None]]) -> None:
        task = asyncio.ensure_future(work())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- per-connection balancing (and the path proxies) ----------------------------------------
    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections_total += 1
        if self.fault.mode is PathMode.RESET:
            _reset(client_w.transport)
            return
        writers = [client_w]
        entry: _Conn = (client_w.transport, None)
        self._conns.add(entry)
        try:
            await self._flowing.wait()  # a blackhole holds the connection here, silent
            upstream = self.pick()
            if upstream is None or self._resetting():
                _reset(client_w.transport)
                return
            try:
                up_r, up_w = await asyncio.open_connection(*upstream)
            except OSError:
                _reset(client_w.transport)
                return
            writers.append(up_w)
            self._conns.discard(entry)
            entry = (client_w.transport, up_w.transport)
            self._conns.add(entry)
            for writer in writers:
                _nodelay(writer.transport)
            await asyncio.gather(self._pump(client_r, up_w), self._pump(up_r, client_w))
        finally:
            self._conns.discard(entry)
            for writer in writers:
                writer.close()

    async def _delay(self, seconds: float) -> None:
        """Sleep `seconds`, or less if the fault changes meanwhile (then re-check: the new
        fault may be another latency, or a blackhole)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._fault_changed.wait(), seconds)
        if not self._flowing.is_set():
            await self._flowing.wait()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if not self._flowing.is_set():
                    await self._flowing.wait()
                if self.fault.mode is PathMode.LATENCY and self.fault.latency_ms > 0:
                    await self._delay(self.fault.latency_ms / 1000)
                writer.write(data)
                if writer.transport.get_write_buffer_size() > _CHUNK:  # backpressure only
                    await writer.drain()
            if writer.can_write_eof() and not writer.transport.is_closing():
                writer.write_eof()
        except (ConnectionError, OSError, RuntimeError):  # uvloop: RuntimeError once closed
            writer.transport.abort()


# -- per-request balancing ----------------------------------------------------------------------
class _Pod(asyncio.Protocol):
    """The connection from one client connection to one pod, kept alive between requests;
    what the pod answers goes to `client`."""

    def __init__(self, client: _Client, upstream: Upstream) -> None:
        self.client, self.upstream = client, upstream
        self.transport = cast(asyncio.Transport, None)
        self.response: ResponseParser | None = None  # to the request sent last
        self.reused = self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        _nodelay(transport)

    def expect(self, request: RequestHead, reused: bool) -> None:
        """`request` goes to this pod: read its answer."""
        self.response, self.reused = ResponseParser(request), reused

    def write(self, data: bytes) -> None:
        if not self.closed and not self.transport.is_closing():
            self.transport.write(data)  # if the pod is gone, its answer (None) says so

    @property
    def usable(self) -> bool:
        return not self.closed and not self.transport.is_closing()

    def data_received(self, data: bytes) -> None:
        self.client.answer(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.client.pod_lost(self)

    def pause_writing(self) -> None:
        self.client.hold("pod", True)

    def resume_writing(self) -> None:
        self.client.hold("pod", False)


class _Client(asyncio.Protocol):
    """One client connection in the per-request mode: requests are parsed as they come and
    each goes, streamed, to a pod picked for it (see the module's docstring)."""

    def __init__(self, proxy: TcpProxy) -> None:
        self.proxy = proxy
        self.requests = RequestParser(proxy.max_body_bytes)
        self.pool: dict[Upstream, _Pod] = {}
        self.transport = cast(asyncio.Transport, None)
        self.entry: _Conn | None = None
        self.request: RequestHead | None = None  # in flight: being sent, or answered
        self.pod: _Pod | None = None  # where it went
        self.sending = False  # its body is still coming
        self.held: bytes | None = None  # all of it sent so far, while under _CHUNK bytes
        self.keep = False  # the connection stays open after the answer
        self.retries = 0
        self.waiting = False  # a task is connecting to a pod, or waiting out a blackhole
        self.eof = self.closing = False
        self._holds: set[str] = set()  # why reading is paused
        self._out: list[bytes] = []  # for the pod, written at the end of `_advance`

    # -- the client's side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.proxy.connections_total += 1
        if self.proxy._resetting():
            _reset(transport)
            return
        self.entry = (transport, None)
        self.proxy._conns.add(self.entry)
        _nodelay(transport)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.requests.feed(data)
        except TooLarge as exc:  # answered, then closed: the rest of the request is not read
            self._finish(exc.answer)
            return
        except HttpError:
            self._abort()
            return
        self._advance()

    def eof_received(self) -> bool:
        if not self.requests.idle:
            self._abort()  # closed inside a request
            return False
        self.eof = True
        return self.request is not None or self.requests.queued  # answer those first

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.entry is not None:
            self.proxy._conns.discard(self.entry)
        for pod in list(self.pool.values()):
            pod.transport.abort()

    def pause_writing(self) -> None:
        for pod in self.pool.values():
            pod.transport.pause_reading()

    def resume_writing(self) -> None:
        for pod in self.pool.values():
            if pod.usable:
                pod.transport.resume_reading()

    def hold(self, why: str, on: bool) -> None:
        """Stop (or resume) reading from the client for `why`: reading stops while what was
        read cannot be sent on, so that a connection costs at most about one read."""
        before = bool(self._holds)
        if on:
            self._holds.add(why)
        else:
            self._holds.discard(why)
        if self.closing or before == bool(self._holds):
            return
        if self._holds:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def _finish(self, answer: bytes) -> None:
        """Answer `answer` (the proxy's own), then close."""
        if self.closing:
            return
        self.closing = True
        for pod in list(self.pool.values()):
            pod.transport.abort()
        self.transport.write(answer)
        self.transport.close()

    def _abort(self) -> None:
        self.closing = True
        self.transport.abort()

    # -- requests out
    def _advance(self) -> None:
        """Send on what the parser has queued, as far as the state allows."""
        while not self.waiting and not self.closing:
            if self.request is None:
                head = self.requests.next_head()
                if head is None:
                    break
                self._begin(head)
            elif self.sending and self.requests.queued:
                data, done = self.requests.next_body()
                self._send(data)
                self.sending = not done
            else:
                break
        if self._out and self.pod is not None:  # one write: the pod wakes up once
            self.pod.write(b"".join(self._out))
        self._out.clear()
        pipelined = self.request is not None and not self.sending and self.requests.queued
        self.hold("pipelined", pipelined)  # read on once the request before is answered

    def _begin(self, request: RequestHead) -> None:
        self.proxy.requests_total += 1
        self.request, self.sending, self.held, self.retries = request, True, request.raw, 0
        upstream = self.proxy.pick() if self.proxy._flowing.is_set() else None
        pod = self.pool.get(upstream) if upstream is not None else None
        if pod is not None and pod.usable:
            self.pod = pod
            pod.expect(request, reused=True)
            self._out.append(request.raw)
            return
        self._wait(upstream)

    def _send(self, data: bytes) -> None:
        if self.held is not None:
            self.held = self.held + data if len(self.held) + len(data) <= _CHUNK else None
        self._out.append(data)

    def _wait(self, upstream: Upstream | None) -> None:
        """Connect (to `upstream`, else to a new pick) in a task, after any blackhole."""
        self.waiting = True
        self.hold("waiting", True)
        self.proxy._spawn(functools.partial(self._connect, upstream))

    async def _connect(self, upstream: Upstream | None) -> None:
        await self.proxy._flowing.wait()  # a blackhole holds each new request here
        pod = await self._open(upstream)
        if self.closing:
            if pod is not None:
                pod.transport.abort()
            return
        self.waiting = False
        self.hold("waiting", False)
        if pod is None:
            self._finish(NO_UPSTREAM)
            return
        if self.request is None or self.held is None:  # _dispatch runs only with a request
            raise RuntimeError("the proxy picked a pod with no request to send it")
        self.pod = pod
        pod.expect(self.request, reused=False)
        self._out.append(self.held)
        self._advance()

    async def _open(self, first: Upstream | None) -> _Pod | None:
        """A new connection to a picked pod (`first`, if given); None when there is no ready
        pod, or none takes the connection."""
        loop = asyncio.get_running_loop()
        for attempt in range(_PICK_ATTEMPTS):
            upstream = first if attempt == 0 and first is not None else self.proxy.pick()
            if upstream is None:
                return None
            if (old := self.pool.pop(upstream, None)) is not None:
                old.transport.abort()  # the pod closed it while it was idle
            try:
                _, pod = await loop.create_connection(
                    functools.partial(_Pod, self, upstream), *upstream
                )
            except OSError:
                continue  # refused: nothing was sent, pick again
            self.pool[upstream] = pod
            return pod
        return None

    # -- answers back
    def answer(self, pod: _Pod, data: bytes) -> None:
        """Relay what `pod` says, as it comes."""
        response = pod.response
        if pod is not self.pod or response is None or self.closing or self.request is None:
            pod.transport.abort()  # a pod speaking out of turn
            return
        headed = response.headed
        try:
            out = response.feed(data)
        except HttpError:
            pod.transport.abort()  # `pod_lost` says what the client gets
            return
        if not response.headed:
            return
        if not headed:
            self.keep = response.keep_alive and self.request.keep_alive
            if not self.keep:
                out = closing(out)
        self.transport.write(out)
        if response.complete:
            self._answered(pod)

    def _answered(self, pod: _Pod) -> None:
        keep = self.keep and not self.sending  # answered before the request ended: close
        self.request = self.pod = pod.response = None
        if not keep:
            self.pool.pop(pod.upstream, None)
            pod.transport.close()
            self.closing = True
            self.transport.close()
            return
        self._advance()
        if self.eof and self.request is None and not self.requests.queued:
            self.closing = True
            self.transport.close()

    def pod_lost(self, pod: _Pod) -> None:
        if self.pool.get(pod.upstream) is pod:
            del self.pool[pod.upstream]
        if pod is not self.pod or self.closing:
            return
        response = pod.response
        if response is None or not response.headed:  # the pod took the request and closed
            self.pod = None
            self.retries += 1
            if pod.reused and self.held is not None and self.retries < _PICK_ATTEMPTS:
                self._wait(None)  # a kept-alive connection the pod had closed: again
            else:
                self._finish(BAD_GATEWAY)
        elif response.delimited:
            self._abort()  # the pod died mid-answer
        else:  # an answer delimited by the pod's close: that was all of it
            self.closing = True
            self.transport.close()
