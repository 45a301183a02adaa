"""TCP proxies on asyncio: path proxies (faults on an edge) and per-connection service proxies.

A path proxy forwards to one upstream and can be switched, at run time, into a fault mode:

- `blackhole`: bytes stop flowing both ways, on new and established connections, without RST
  or FIN (a partition / a NetworkPolicy drop). Clients hang until their own timeouts. When the
  fault is lifted, held data flows again, like TCP retransmission after a partition heals.
- `reset`: established connections are reset (RST) and new ones are reset on accept.
- `latency`: each chunk is delayed by `latency_ms` in each direction.

A service proxy is the same machine with an upstream picker that round-robins over the ready
pods of an app, per connection (`Balancing.CONNECTION`, kube-proxy, L4): each client
connection goes to one pod for its whole life. A keep-alive client stays on its pod even when
that pod turns unready, and a replacement pod gets only new connections. With no ready pod a
new connection is reset, the local equivalent of "connection refused". The MLflow service
proxy is one, and so is the recommender's with `reco_proxy_balancing: connection`.

Per-request balancing (`Balancing.REQUEST`, an ingress, L7: the recommender's default) is not
here: it is HAProxy, run by the daemon (`chaoshelius.stack.haproxy`). The asyncio relay this
module had for it (requests parsed with httptools) measured 1.24-1.42 over direct at p50 in
the stack bench (a bare Python relay 1.20); on a C event loop the per-request path costs what
the per-connection pump does (1.07-1.23).
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
    """Listen on host:port and forward each connection to `pick()`'s upstream (per-connection
    balancing only: per request is `chaoshelius.stack.haproxy.HaproxyBalancer`)."""

    def __init__(
        self,
        name: str,
        port: int,
        pick: Callable[[], Upstream | None],
        host: str = "127.0.0.1",
        balancing: Balancing = Balancing.CONNECTION,
    ) -> None:
        if Balancing(balancing) is not Balancing.CONNECTION:
            raise ValueError(
                "TcpProxy balances per connection; per-request balancing is HAProxy's "
                "(chaoshelius.stack.haproxy.HaproxyBalancer)"
            )
        self.name = name
        self.host = host
        self.port = port
        self.pick = pick
        self.balancing = Balancing.CONNECTION
        self.fault = ProxyFault()
        self._flowing = asyncio.Event()
        self._flowing.set()
        # set whenever the fault changes: a chunk held by `latency` is released at once when
        # the fault is lifted (restore or TTL), instead of after its full delay
        self._fault_changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
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
            client.abort()  # type: ignore[attr-defined]
            if upstream is not None:
                upstream.abort()  # type: ignore[attr-defined]

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
