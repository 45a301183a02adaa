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
import contextlib
import itertools
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

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


@dataclass(frozen=True)
class _Head:
    raw: bytes
    first_line: bytes
    headers: dict[bytes, bytes]  # lower-cased names; repeated headers joined with b","
    http10: bool

    @classmethod
    def parse(cls, raw: bytes) -> _Head:
        lines = raw[:-4].split(b"\r\n")
        if len(lines) - 1 > MAX_HEADERS:
            raise _TooLarge(
                _HEAD_TOO_LARGE, f"request head has more than {MAX_HEADERS} header lines"
            )
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise _HttpError(f"bad header line {line[:80]!r}")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = headers[key] + b"," + value if key in headers else value
        first = lines[0]
        return cls(raw, first, headers, http10=b"HTTP/1.0" in first)

    def closing(self) -> bytes:
        """The head with `Connection: close` (the proxy closes the client connection after it)."""
        lines = [
            line
            for line in self.raw[:-4].split(b"\r\n")
            if not line.lower().startswith(b"connection:")
        ]
        return b"\r\n".join([*lines, b"connection: close"]) + b"\r\n\r\n"

    def tokens(self, name: bytes) -> set[bytes]:
        return {t.strip().lower() for t in self.headers.get(name, b"").split(b",") if t.strip()}

    @property
    def chunked(self) -> bool:
        return b"chunked" in self.tokens(b"transfer-encoding")

    @property
    def content_length(self) -> int | None:
        value = self.headers.get(b"content-length")
        if value is None:
            return None
        try:
            length = int(value.split(b",")[0])
        except ValueError as exc:
            raise _HttpError(f"bad Content-Length {value!r}") from exc
        if length < 0:
            raise _HttpError(f"bad Content-Length {value!r}")
        return length

    @property
    def keep_alive(self) -> bool:
        connection = self.tokens(b"connection")
        if self.http10:
            return b"keep-alive" in connection
        return b"close" not in connection


async def _read_head(reader: asyncio.StreamReader) -> _Head | None:
    """The next message head, or None on a clean end of stream before its first byte."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise _HttpError("connection closed inside a message head") from exc
    except asyncio.LimitOverrunError as exc:
        raise _TooLarge(_HEAD_TOO_LARGE, f"request head is larger than {_MAX_HEAD} bytes") from exc
    if len(raw) > _MAX_HEAD:
        raise _TooLarge(_HEAD_TOO_LARGE, f"request head is larger than {_MAX_HEAD} bytes")
    return _Head.parse(raw)


async def _relay_body(
    head: _Head,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    until_eof: bool,
    limit: int | None = None,
) -> None:
    """Copy the body that follows `head` (chunked, Content-Length, or until EOF).

    With a `limit` (a request's body): `_TooLarge` as soon as the body is known to pass it,
    or its trailers pass `MAX_HEADERS` lines or `_MAX_HEAD` bytes."""
    try:
        if head.chunked:
            total = 0
            while True:
                line = await reader.readuntil(b"\r\n")
                writer.write(line)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError as exc:
                    raise _HttpError(f"bad chunk size {line[:40]!r}") from exc
                total += len(line) + size + 2  # as held: chunk lines count too
                if limit is not None and total > limit:
                    raise _TooLarge(_BODY_TOO_LARGE, _body_detail(limit))
                if size == 0:
                    await _relay_trailers(reader, writer, bounded=limit is not None)
                    return
                await _copy_exactly(reader, writer, size + 2)
        elif (length := head.content_length) is not None:
            if limit is not None and length > limit:
                raise _TooLarge(_BODY_TOO_LARGE, _body_detail(limit))
            await _copy_exactly(reader, writer, length)
        elif until_eof:
            while data := await reader.read(_CHUNK):
                writer.write(data)
                await writer.drain()
    except asyncio.IncompleteReadError as exc:
        raise _HttpError("connection closed inside a message body") from exc
    except asyncio.LimitOverrunError as exc:
        raise _HttpError("chunk line too long") from exc


async def _relay_trailers(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, bounded: bool
) -> None:
    """Trailers, then the empty line that ends a chunked body."""
    lines = size = 0
    while True:
        trailer = await reader.readuntil(b"\r\n")
        writer.write(trailer)
        if trailer == b"\r\n":
            return
        lines += 1
        size += len(trailer)
        if bounded and (lines > MAX_HEADERS or size > _MAX_HEAD):
            raise _TooLarge(
                _HEAD_TOO_LARGE,
                f"request trailers pass {MAX_HEADERS} lines or {_MAX_HEAD} bytes",
            )


def _body_detail(limit: int) -> str:
    return f"request body is larger than the {limit}-byte limit of the stack's proxy"


async def _copy_exactly(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, length: int
) -> None:
    while length > 0:
        data = await reader.readexactly(min(length, _CHUNK))
        length -= len(data)
        writer.write(data)
        if writer.transport.get_write_buffer_size() > _CHUNK:
            await writer.drain()


def _response_has_body(request: _Head, response: _Head) -> bool:
    status = response.first_line.split(b" ", 2)[1:2]
    code = int(status[0]) if status and status[0].isdigit() else 0
    return not (request.first_line.startswith(b"HEAD ") or code in (204, 304) or code < 200)


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
        pool: dict[Upstream, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        try:
            while True:
                request = await _read_head(client_r)
                if request is None:
                    return
                await self._flowing.wait()
                self.requests_total += 1
                body = await self._read_request_body(request, client_r, self.max_body_bytes)
                answered = await self._forward(request, body, pool, client_w)
                if not answered or not request.keep_alive:
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

    @staticmethod
    async def _read_request_body(
        request: _Head, client_r: asyncio.StreamReader, limit: int
    ) -> bytes:
        """The request body as its raw bytes (requests here are small JSON bodies), so a
        request can be sent again to another pod when the first pick fails before answering;
        `_TooLarge` past `limit` bytes."""
        buffer = _Buffer()
        await _relay_body(
            request,
            client_r,
            buffer,  # type: ignore[arg-type]
            until_eof=False,
            limit=limit,
        )
        return buffer.data()

    async def _forward(
        self,
        request: _Head,
        body: bytes,
        pool: dict[Upstream, tuple[asyncio.StreamReader, asyncio.StreamWriter]],
        client_w: asyncio.StreamWriter,
    ) -> bool:
        """Send one request to a picked pod and relay its answer; False when the client
        connection must be closed (no pod, or a response delimited by the pod's close)."""
        for _ in range(_PICK_ATTEMPTS):
            upstream = self.pick()
            if upstream is None:
                break
            reused = upstream in pool
            if not reused:
                try:
                    pool[upstream] = await asyncio.open_connection(*upstream)
                except OSError:
                    continue  # refused: nothing was sent, pick again
                _nodelay(pool[upstream][1])
            up_r, up_w = pool[upstream]
            try:
                up_w.write(request.raw + body)
                response = await _read_head(up_r)
            except (ConnectionError, OSError, _HttpError):
                response = None
            if response is None:
                pool.pop(upstream)[1].transport.abort()
                if reused:
                    continue  # a kept-alive connection the pod had closed: try again
                client_w.write(_BAD_GATEWAY)  # the pod took the request and died
                await client_w.drain()
                return False
            has_body = _response_has_body(request, response)
            delimited = response.chunked or response.content_length is not None
            keep = response.keep_alive and request.keep_alive and (delimited or not has_body)
            client_w.write(response.raw if keep else response.closing())
            if has_body:
                await _relay_body(response, up_r, client_w, until_eof=not delimited)
            await client_w.drain()
            if not response.keep_alive or not keep:
                pool.pop(upstream)[1].close()
            return keep
        client_w.write(_NO_UPSTREAM)
        await client_w.drain()
        return False


class _Buffer:
    """Collects what _relay_body writes (the StreamWriter methods it uses)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.transport = self

    def write(self, data: bytes) -> None:
        self._parts.append(data)

    def get_write_buffer_size(self) -> int:
        return 0

    async def drain(self) -> None:
        return None

    def data(self) -> bytes:
        return b"".join(self._parts)


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
