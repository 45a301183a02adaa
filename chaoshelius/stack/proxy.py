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
- `request` (an ingress, L7, HTTP/1.1 only): the proxy reads each request's boundaries
  (Content-Length or chunked), picks a ready pod for every request, and relays the response
  (Content-Length, chunked, or until the pod closes). Upstream connections are kept alive per
  client connection and pod, so a pod picked again reuses its connection. With no ready pod
  the client gets `503` (and the connection is closed), as from an ingress with no endpoints.
  A pod that refuses the connection, or a kept-alive upstream connection the pod had closed, is
  retried on another pick; a pod that takes the request and closes without answering gives
  `502`; a pod that dies mid-answer resets the client connection.

  What one request may cost the process (the stack's daemon, which also runs the control API,
  the supervisor and the fault TTL reaper) is bounded: a request body is held whole (so that
  it can be sent again to another pick) only up to `max_body_bytes` (default 2 MiB, twice the
  service's own 1 MiB limit, so the service's 413 still answers the bodies in between); a
  larger one gets `413` as soon as that is known (from `Content-Length` before the body is
  read, or by counting the chunks), and the connection is closed. A request head of more than
  `MAX_HEADERS` header lines or 64 KiB, and request trailers of more than `MAX_HEADERS` lines
  or 64 KiB, get `431`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import httptools

from chaoshelius.topology import PathMode

_CHUNK = 65536
_MAX_HEAD = 65536  # request or response line plus headers (the StreamReader's limit too)
MAX_HEADERS = 100  # header lines in a head, trailer lines after a chunked body
MAX_REQUEST_BODY_BYTES = 2 * 1024 * 1024  # per-request balancing holds a body whole up to this
_PICK_ATTEMPTS = 3
Upstream = tuple[str, int]


class Balancing(StrEnum):
    CONNECTION = "connection"
    REQUEST = "request"


class _HttpError(Exception):
    """A malformed or truncated HTTP message: the connection is dropped."""


class _TooLarge(_HttpError):
    """A request over a limit: answered with `answer` (413 or 431), then the connection is
    closed. From a pod's answer, it is a malformed message like any other."""

    def __init__(self, status: bytes, detail: str) -> None:
        super().__init__(detail)
        self.answer = _canned(status, detail.encode())


@dataclass(frozen=True, slots=True)
class _Head:
    """A request head as the proxy sends it on (rebuilt from what httptools parsed)."""

    raw: bytes
    method: bytes
    keep_alive: bool


def _is_chunked(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(
        name.lower() == b"transfer-encoding" and b"chunked" in value.lower()
        for name, value in headers
    )


def _lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(name + b": " + value + b"\r\n" for name, value in headers)


class _Requests:
    """The requests of one client connection, parsed by httptools (the parser uvicorn uses),
    queued as parts: a `_Head`, body bytes (chunked again when the request came chunked), and
    None at the end of each message. The queue holds at most what one read brought."""

    def __init__(self, limit: int) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._limit = limit
        self._parts: collections.deque[_Head | bytes | None] = collections.deque()
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._trailers: list[tuple[bytes, bytes]] = []
        self._in_head = self._chunked = False
        self._idle = True  # between two messages
        self._unparsed = 0  # bytes fed inside a head, or since the last body byte
        self._body = 0

    async def _read(self, reader: asyncio.StreamReader) -> bool:
        """Feed one read to the parser; False on a clean end of stream between messages."""
        data = await reader.read(_CHUNK)
        if not data:
            if self._idle:
                return False
            raise _HttpError("connection closed inside a request")
        body = self._body
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _TooLarge):
                raise exc.__context__ from None
            raise _HttpError(str(exc)) from exc
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            raise _HttpError(f"bad or unsupported request: {exc!r}") from exc
        if self._idle or self._body != body:
            self._unparsed = 0
        else:
            self._unparsed += len(data)
        if self._unparsed > _MAX_HEAD:  # a head, chunk line or trailer without an end
            where = "request head is" if self._in_head else "request trailers are"
            raise _TooLarge(_HEAD_TOO_LARGE, f"{where} larger than {_MAX_HEAD} bytes")
        return True

    async def head(self, reader: asyncio.StreamReader) -> _Head | None:
        """The next request's head, or None when the client closes between requests."""
        while not self._parts:
            if not await self._read(reader):
                return None
        head = self._parts.popleft()
        assert isinstance(head, _Head)
        return head

    async def body(self, reader: asyncio.StreamReader) -> tuple[bytes, bool]:
        """The body bytes queued now (reading once if none are), and whether the request
        ended with them."""
        while not self._parts:
            await self._read(reader)
        data: list[bytes] = []
        while self._parts:
            part = self._parts.popleft()
            if part is None:
                return b"".join(data), True
            assert isinstance(part, bytes)
            data.append(part)
        return b"".join(data), False

    # httptools callbacks (a `_TooLarge` raised here stops the parser; `_read` re-raises it)
    def on_message_begin(self) -> None:
        self._url, self._headers, self._trailers = b"", [], []
        self._in_head, self._idle, self._body = True, False, 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:
            self._headers.append((name, value))
            if len(self._headers) > MAX_HEADERS:
                raise _TooLarge(
                    _HEAD_TOO_LARGE, f"request head has more than {MAX_HEADERS} header lines"
                )
            return
        self._trailers.append((name, value))
        if len(self._trailers) > MAX_HEADERS or len(_lines(self._trailers)) > _MAX_HEAD:
            raise _TooLarge(
                _HEAD_TOO_LARGE,
                f"request trailers pass {MAX_HEADERS} lines or {_MAX_HEAD} bytes",
            )

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser, headers = self._parser, _lines(self._headers)
        if len(self._url) + len(headers) > _MAX_HEAD:
            raise _TooLarge(_HEAD_TOO_LARGE, f"request head is larger than {_MAX_HEAD} bytes")
        for name, value in self._headers:
            if name.lower() == b"content-length" and int(value) > self._limit:
                raise _TooLarge(_BODY_TOO_LARGE, _body_detail(self._limit))
        self._chunked = _is_chunked(self._headers)
        method = parser.get_method()
        first = b"%s %s HTTP/%s\r\n" % (method, self._url, parser.get_http_version().encode())
        self._parts.append(_Head(first + headers + b"\r\n", method, parser.should_keep_alive()))

    def on_body(self, data: bytes) -> None:
        self._body += len(data)
        if self._body > self._limit:
            raise _TooLarge(_BODY_TOO_LARGE, _body_detail(self._limit))
        self._parts.append(b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data)

    def on_message_complete(self) -> None:
        if self._chunked:
            self._parts.append(b"0\r\n" + _lines(self._trailers) + b"\r\n")
        self._parts.append(None)
        self._idle = True


class _Response:
    """One pod's answer, parsed by httptools as it comes, relayed the same way."""

    def __init__(self, request: _Head) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._skip_body = request.method == b"HEAD"  # llhttp would wait for the body
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._trailers: list[tuple[bytes, bytes]] = []
        self._parts: list[bytes] = []
        self._first = b""
        self.seen = 0
        self.headed = self.complete = self.keep_alive = self.chunked = self.delimited = False

    def feed(self, data: bytes) -> None:
        self.seen += len(data)
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            raise _HttpError(f"bad answer from the pod: {exc!r}") from exc

    def head(self, close: bool) -> bytes:
        """The head to send on: with `Connection: close` when the proxy closes after it."""
        headers = self._headers
        if close:
            kept = [(n, v) for n, v in headers if n.lower() != b"connection"]
            headers = [*kept, (b"connection", b"close")]
        return self._first + _lines(headers) + b"\r\n"

    def take(self) -> bytes:
        """The body bytes parsed since the last call."""
        data = b"".join(self._parts)
        self._parts.clear()
        return data

    # httptools callbacks
    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        (self._trailers if self.headed else self._headers).append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        version, code = parser.get_http_version().encode(), parser.get_status_code()
        self._first = b"HTTP/%s %d %s\r\n" % (version, code, self._reason)
        self.keep_alive, self.headed = parser.should_keep_alive(), True
        self.chunked = _is_chunked(self._headers)
        self.delimited = self.chunked or any(
            name.lower() == b"content-length" for name, _ in self._headers
        )
        if self._skip_body:
            self.complete = True

    def on_body(self, data: bytes) -> None:
        if not self.complete:
            self._parts.append(b"%x\r\n%b\r\n" % (len(data), data) if self.chunked else data)

    def on_message_complete(self) -> None:
        if not self.complete and self.chunked:
            self._parts.append(b"0\r\n" + _lines(self._trailers) + b"\r\n")
        self.complete = True


async def _read_response(request: _Head, reader: asyncio.StreamReader) -> _Response | None:
    """A pod's answer up to the end of its head; None if the pod closed (or garbled it) first."""
    response = _Response(request)
    try:
        while not response.headed:
            data = await reader.read(_CHUNK)
            if not data or response.seen > _MAX_HEAD:
                return None
            response.feed(data)
    except (ConnectionError, OSError, _HttpError):
        return None
    return response


async def _relay_response(
    response: _Response, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, keep: bool
) -> None:
    """Send the head and stream the body on, as it comes."""
    writer.write(response.head(close=not keep) + response.take())
    while not response.complete:
        data = await reader.read(_CHUNK)
        if not data:
            if response.delimited:
                raise _HttpError("connection closed inside a message body")
            break  # delimited by the pod's close
        response.feed(data)
        writer.write(response.take())
        if writer.transport.get_write_buffer_size() > _CHUNK:
            await writer.drain()
    await writer.drain()


def _body_detail(limit: int) -> str:
    return f"request body is larger than the {limit}-byte limit of the stack's proxy"


def _canned(status: bytes, detail: bytes) -> bytes:
    body = b'{"detail": "' + detail + b'"}'
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\nconnection: close\r\n\r\n"
        + body
    )


_BODY_TOO_LARGE = b"413 Content Too Large"
_HEAD_TOO_LARGE = b"431 Request Header Fields Too Large"
_NO_UPSTREAM = _canned(b"503 Service Unavailable", b"no ready upstream pod")
_BAD_GATEWAY = _canned(b"502 Bad Gateway", b"the upstream pod closed the connection")


@dataclass(frozen=True)
class ProxyFault:
    mode: PathMode | None = None  # None: passing through
    latency_ms: int = 0

    @property
    def status(self) -> str:
        """The mode as the stack's status shows it (`normal` when passing through)."""
        return "normal" if self.mode is None else str(self.mode)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0) instead of FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


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
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections_total = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, reuse_address=True, backlog=1024
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._flowing.set()
        for client, upstream in list(self._conns):
            client.transport.abort()
            if upstream is not None:
                upstream.transport.abort()
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

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections_total += 1
        if self.fault.mode is PathMode.RESET:
            _reset(client_w)
            return
        if self.balancing is Balancing.REQUEST:
            await self._handle_requests(client_r, client_w)
            return
        entry: tuple[asyncio.StreamWriter, asyncio.StreamWriter | None] = (client_w, None)
        self._conns.add(entry)
        try:
            await self._flowing.wait()  # a blackhole holds the connection here, silent
            upstream = self.pick()
            if upstream is None or self._resetting():
                _reset(client_w)
                return
            try:
                up_r, up_w = await asyncio.open_connection(*upstream)
            except OSError:
                _reset(client_w)
                return
            self._conns.discard(entry)
            entry = (client_w, up_w)
            self._conns.add(entry)
            for sock_writer in (client_w, up_w):
                sock = sock_writer.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await asyncio.gather(self._pump(client_r, up_w), self._pump(up_r, client_w))
        finally:
            self._conns.discard(entry)
            for writer in entry:
                if writer is not None:
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

    # -- per-request balancing ------------------------------------------------------------------
    async def _handle_requests(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        """Serve one client connection request by request, each on a freshly picked pod."""
        entry: tuple[asyncio.StreamWriter, asyncio.StreamWriter | None] = (client_w, None)
        self._conns.add(entry)
        _nodelay(client_w)
        requests = _Requests(self.max_body_bytes)
        pool: _Pool = {}
        try:
            while (request := await requests.head(client_r)) is not None:
                await self._flowing.wait()
                self.requests_total += 1
                if not await self._exchange(request, requests, client_r, pool, client_w):
                    return
        except _TooLarge as exc:  # answered, then closed: the rest of the request is not read
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                client_w.write(exc.answer)
                await client_w.drain()
        except (_HttpError, ConnectionError, OSError):
            client_w.transport.abort()
        finally:
            self._conns.discard(entry)
            for _, up_w in pool.values():
                up_w.transport.abort()
            client_w.close()

    async def _exchange(
        self,
        request: _Head,
        requests: _Requests,
        client_r: asyncio.StreamReader,
        pool: _Pool,
        client_w: asyncio.StreamWriter,
    ) -> bool:
        """Send one request to a picked pod, its body streamed as it comes, and relay the
        answer; False when the client connection must be closed (no pod, or a response
        delimited by the pod's close). While the request is small (one read), it is kept,
        so that it can be sent again when a kept-alive connection the pod closed fails it."""
        data, done = await requests.body(client_r)
        held: bytes | None = request.raw + data
        streamed = False
        for _ in range(_PICK_ATTEMPTS):
            picked = await self._connect(pool)
            if picked is None:
                break
            upstream, reused = picked
            up_r, up_w = pool[upstream]
            if streamed:
                up_w.write(held or b"")
            else:
                held = await self._stream(requests, client_r, up_w, held or b"", done)
                streamed = True
            response = await _read_response(request, up_r)
            if response is None:
                pool.pop(upstream)[1].transport.abort()
                if reused and held is not None:
                    continue  # a kept-alive connection the pod had closed: try again
                client_w.write(_BAD_GATEWAY)  # the pod took the request and died
                await client_w.drain()
                return False
            keep = response.keep_alive and request.keep_alive
            await _relay_response(response, up_r, client_w, keep)
            if not keep:
                pool.pop(upstream)[1].close()
            return keep
        client_w.write(_NO_UPSTREAM)
        await client_w.drain()
        return False

    async def _connect(self, pool: _Pool) -> tuple[Upstream, bool] | None:
        """A picked pod with an open connection in `pool` (and whether it was kept alive);
        None when there is no ready pod, or none took the connection."""
        for _ in range(_PICK_ATTEMPTS):
            upstream = self.pick()
            if upstream is None:
                return None
            kept = pool.get(upstream)
            if kept is not None and not kept[0].at_eof():
                return upstream, True
            if kept is not None:  # the pod closed it while it was idle
                pool.pop(upstream)[1].transport.abort()
            try:
                pool[upstream] = await asyncio.open_connection(*upstream)
            except OSError:
                continue  # refused: nothing was sent, pick again
            _nodelay(pool[upstream][1])
            return upstream, False
        return None

    @staticmethod
    async def _stream(
        requests: _Requests,
        client_r: asyncio.StreamReader,
        up_w: asyncio.StreamWriter,
        first: bytes,
        done: bool,
    ) -> bytes | None:
        """Send `first`, then the rest of the request body as the client sends it; return
        the whole request if it fitted in one read (None otherwise). A pod that goes away
        meanwhile is noticed when its answer is read; the body is still read to its end."""
        sending = True
        held: bytes | None = first
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            up_w.write(first)
        while not done:
            data, done = await requests.body(client_r)
            held = None
            if not sending:
                continue
            try:
                up_w.write(data)
                if up_w.transport.get_write_buffer_size() > _CHUNK:
                    await up_w.drain()
            except (ConnectionError, OSError, RuntimeError):  # uvloop: RuntimeError once closed
                sending = False
        return held


_Pool = dict[Upstream, tuple[asyncio.StreamReader, asyncio.StreamWriter]]


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
