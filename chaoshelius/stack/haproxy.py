"""The recommender service's per-request (L7) balancer: HAProxy, run by the stack's daemon.

Why HAProxy: issue 18 asks the extra hop of the per-request mode to cost at most 15 % at p50
(`benchmarks/bench_stack.py`). The asyncio relay the stack had (httptools per request)
measured 1.24-1.42 and even a bare Python byte relay 1.20 on this 2-core machine; a relay on a
C event loop brings the per-request path to what the per-connection pump costs: 1.07-1.23 in
six runs, under 1.15 in the loaded ones (docs/stack.md has the figures and why the quiet ones
miss: a loopback hop's floor, and a warmer pinned pod on the direct side).

The process. `haproxy -db -f RUN/haproxy.cfg` (foreground, master-worker off) is a child of
the daemon in a process group of its own (`procs.spawn_group`, like Prometheus), started under
util-linux's `setpriv --pdeathsig KILL` when it is there, so it dies with the daemon even when
the daemon is SIGKILLed; its group is also recorded in `stack.json` (`status.py`), so `stack
down`/`up` sweep it after a crash either way. It is stopped (SIGTERM: HAProxy's hard stop) with
the stack, and started again if it exits on its own. Root or not makes no difference: no
`user`/`chroot`, a loopback port above 1024, every file in the stack's 0700 run directory.

The configuration (`render_config`, written 0600 into the run directory):

- `mode http`, `bind 127.0.0.1:PORT proto h1`: HTTP/1.1 only, like the pods (no HTTP/2
  preface, no h2c);
- `balance roundrobin` over a `server-template` of `SLOTS` servers (more than the 9 replicas
  a profile or a scale fault allows, a rollout's surge included), all starting `disabled`
  (maintenance): a slot serves only once the daemon gives it a pod;
- `http-reuse always`: kept-alive pod connections serve any client's requests, the first of
  a client connection included (the pods are on loopback and answer every request); `retries
  3`, `option redispatch 1` and `retry-on conn-failure empty-response`: a pod that refuses the
  connection (killed, not yet out of the membership) or closes a kept-alive connection without
  answering (uvicorn's 5 s idle close, a pod killed mid-request) costs a retry on another pod,
  not a client error; a pod that dies mid-answer resets the client connection (HAProxy's `SD`);
- timeouts: connect 2 s (loopback: a refusal is immediate), 30 s for a whole request head
  (slowloris), 120 s of client or server inactivity, 120 s of keep-alive idleness; one thread;
  no `maxconn`, so HAProxy derives it from the open-file limit it finds (a fixed one above what
  a non-root user may raise the limit to would stop it at start);
- a runtime API socket, `RUN/haproxy.sock`, mode 600, level admin: only the stack's user may
  change the membership.

Membership: the ready pods (`upstreams()`, the supervisor's `ready_upstreams(App.RECO)`) are
pushed over the runtime API (`set server pods/slotN addr 127.0.0.1 port P`, `set server
pods/slotN state ready|maint`) whenever the daemon's change callback fires (`changed()`: the
supervisor calls it when a pod turns ready or unready, starts, stops or is killed), before the
callback returns (two local round trips), and checked every `RESYNC_SECONDS` against `show
servers state` (what HAProxy really has), so a push only sends differences and a lost one is
repaired. A pod keeps its slot while it is ready; a freed
slot is reused last. With no ready pod HAProxy answers `503` (JSON `no ready upstream pod`).

Bounded inputs (the pods stay behind them, as with the proxy this replaces):

- a request whose `Content-Length` is over `MAX_REQUEST_BODY_BYTES` (2 MiB, twice the
  service's own 1 MiB limit, so the service's 413 still answers the sizes in between) gets
  `413` before any of its body is read, and the connection is closed. A chunked body is
  streamed on as it comes (HAProxy 2.6 cannot count a streamed body); the pod's own limit
  answers `413` past 1 MiB, so HAProxy holds at most a buffer of it;
- a request head over `MAX_HEAD_BYTES` (64 KiB less HAProxy's 1 KiB rewrite reserve) or with
  more than 100 header lines (`tune.http.maxhdr` 101, the request line included) gets HAProxy's
  own `400 Bad request` (an HTML body): its HTTP/1 parser refuses the head before any rule or
  error file applies, so the `431` of the previous proxy is not possible;
- `Upgrade` requests (WebSocket, h2c) and `CONNECT` get `400` (JSON), before any pod sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from chaoshelius.stack.errors import ProcessStartError, StackError
from chaoshelius.stack.procs import LOOPBACK, spawn_group, stop_group
from chaoshelius.stack.proxy import Balancing, ProxyFault, Upstream
from chaoshelius.stack.state import write_private

log = logging.getLogger(__name__)

BIN_ENV = "HELIUS_HAPROXY_BIN"
BACKEND = "pods"
SLOT_PREFIX = "slot"
SLOTS = 18  # twice the most replicas a profile or a scale fault allows (9)
MAX_REQUEST_BODY_BYTES = 2 * 1024 * 1024
BUFFER_BYTES = 65536  # tune.bufsize: a head, and a request HAProxy may retry, fit in one
REWRITE_RESERVE_BYTES = 1024  # tune.maxrewrite
MAX_HEAD_BYTES = BUFFER_BYTES - REWRITE_RESERVE_BYTES
RESYNC_SECONDS = 1.0
START_TIMEOUT_SECONDS = 10.0
SOCKET_TIMEOUT_SECONDS = 5.0
PUSH_NOW_TIMEOUT_SECONDS = 0.5  # the change hook's push, on the daemon's event loop
_SUN_PATH_MAX = 107  # a Unix socket path's bytes (sun_path is 108 with its NUL)
_MAINT_FLAGS = 0x23  # srv_admin_state: forced, inherited or resolution maintenance


class HaproxyError(StackError):
    """HAProxy did not answer, or answered a runtime command with an error."""


def find_binary() -> str:
    """The haproxy executable, or a one-line error saying how to install it."""
    # Debian installs it in /usr/sbin, which a non-root user's PATH may not have
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    candidate = os.environ.get(BIN_ENV) or shutil.which("haproxy", path=path)
    if not candidate or not os.access(candidate, os.X_OK):
        raise StackError(
            "haproxy not found: apt-get install haproxy (or set HELIUS_HAPROXY_BIN to the "
            "binary); the recommender's per-request balancing runs on it"
        )
    return candidate


def _json_detail(text: str) -> str:
    """A JSON body as an HAProxy quoted string (no quote of HAProxy's own inside)."""
    if "'" in text or "\\" in text:
        raise ValueError(f"not a plain detail: {text!r}")
    return '\'{"detail": "' + text + "\"}'"


def slot_name(slot: int) -> str:
    return f"{SLOT_PREFIX}{slot}"


def render_config(
    port: int,
    socket_path: Path,
    slots: int = SLOTS,
    max_body_bytes: int = MAX_REQUEST_BODY_BYTES,
    name: str = "reco-service",
) -> str:
    """haproxy.cfg for one service (see the module's docstring for each choice)."""
    too_large = _json_detail(
        f"request body is larger than the {max_body_bytes}-byte limit of the stack service proxy"
    )
    upgrade = _json_detail(
        "protocol upgrades and CONNECT are not served by the stack service proxy"
    )
    return f"""\
# generated by chaoshelius stack up; do not edit
global
    nbthread 1
    stats socket {socket_path} mode 600 level admin
    stats timeout 10s
    tune.bufsize {BUFFER_BYTES}
    tune.maxrewrite {REWRITE_RESERVE_BYTES}

defaults
    mode http
    timeout connect 2s
    timeout http-request 30s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 120s

frontend {name}
    bind {LOOPBACK}:{port} proto h1
    http-request deny status 400 content-type application/json string {upgrade} if {{ req.hdr(upgrade) -m found }} || METH_CONNECT
    http-request deny status 413 content-type application/json string {too_large} if {{ req.hdr_val(content-length) gt {max_body_bytes} }}
    http-error status 502 content-type application/json string {_json_detail("the upstream pod closed the connection or answered badly")}
    http-error status 503 content-type application/json string {_json_detail("no ready upstream pod")}
    http-error status 504 content-type application/json string {_json_detail("the upstream pod did not answer in time")}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    http-reuse always
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response
    server-template {SLOT_PREFIX} 1-{slots} {LOOPBACK}:1 disabled
"""  # noqa: E501  HAProxy rules are one line each


@dataclass(frozen=True)
class SlotState:
    """One server of the backend as `show servers state` gives it."""

    slot: int
    addr: str
    port: int
    serving: bool  # not in maintenance
    idle_seconds: int  # since its last state change


def parse_servers_state(text: str) -> list[SlotState]:
    """`show servers state BACKEND` -> the slots (its header line names the columns)."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = next((line for line in lines if line.startswith("# ")), None)
    if header is None:
        raise HaproxyError(f"unexpected answer to 'show servers state': {text[:200]!r}")
    columns = header[2:].split()
    where = {name: columns.index(name) for name in columns}
    states = []
    for line in lines[lines.index(header) + 1 :]:
        fields = line.split()
        if len(fields) < len(columns):
            continue
        name = fields[where["srv_name"]]
        if not name.startswith(SLOT_PREFIX):
            continue
        states.append(
            SlotState(
                slot=int(name[len(SLOT_PREFIX) :]),
                addr=fields[where["srv_addr"]],
                port=int(fields[where["srv_port"]]),
                serving=int(fields[where["srv_admin_state"]]) & _MAINT_FLAGS == 0,
                idle_seconds=int(fields[where["srv_time_since_last_change"]]),
            )
        )
    return states


def plan(current: Sequence[SlotState], wanted: Sequence[Upstream]) -> list[str]:
    """The runtime commands that make `current` serve exactly `wanted`: a pod already on a
    serving slot keeps it, the rest take the slots idle the longest (a freed slot last)."""
    wanted = list(dict.fromkeys(_checked(upstream) for upstream in wanted))
    kept: dict[Upstream, int] = {}
    commands = []
    for state in current:
        upstream = (state.addr, state.port)
        if state.serving and upstream in wanted and upstream not in kept:
            kept[upstream] = state.slot
        elif state.serving:
            commands.append(f"set server {BACKEND}/{slot_name(state.slot)} state maint")
    free = sorted(
        (s for s in current if s.slot not in kept.values()),
        key=lambda s: (not s.serving, s.idle_seconds),
        reverse=True,
    )
    missing = [upstream for upstream in wanted if upstream not in kept]
    if len(missing) > len(free):
        log.error(
            "%d ready pods but only %d HAProxy slots: %s left out",
            len(wanted),
            len(current),
            missing[len(free) :],
        )
    for upstream, state in zip(missing, free, strict=False):
        server = f"{BACKEND}/{slot_name(state.slot)}"
        commands.append(f"set server {server} addr {upstream[0]} port {upstream[1]}")
        commands.append(f"set server {server} state ready")
    return commands


def _checked(upstream: Upstream) -> Upstream:
    """An upstream safe to put on a runtime command line: an IP address and a port."""
    host, port = upstream
    ipaddress.ip_address(host)
    if not 0 < int(port) < 65536:
        raise ValueError(f"bad upstream port: {port!r}")
    return (host, int(port))


def _check(commands: Sequence[str], answer: str) -> None:
    refused = [
        line
        for line in answer.splitlines()
        if line.strip() and not line.startswith(("no need to change", "IP changed", "port changed"))
    ]
    if refused:
        raise HaproxyError(f"HAProxy refused {list(commands)}: {'; '.join(refused)}")


class RuntimeApi:
    """HAProxy's runtime API on a Unix socket: one command line per connection."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def ask(self, line: str) -> str:
        async with asyncio.timeout(SOCKET_TIMEOUT_SECONDS):
            reader, writer = await asyncio.open_unix_connection(str(self.path))
            try:
                writer.write(line.encode() + b"\n")
                await writer.drain()
                return (await reader.read()).decode(errors="replace")
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    def ask_now(self, line: str, timeout: float = PUSH_NOW_TIMEOUT_SECONDS) -> str:
        """`ask`, blocking (a local round trip to a C process: well under a millisecond)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    async def run(self, commands: Sequence[str]) -> None:
        """Run `commands` in one go; `HaproxyError` if HAProxy refused one of them."""
        if commands:
            _check(commands, await self.ask(";".join(commands)))

    def run_now(self, commands: Sequence[str]) -> None:
        if commands:
            _check(commands, self.ask_now(";".join(commands)))

    async def slots(self) -> list[SlotState]:
        return parse_servers_state(await self.ask(f"show servers state {BACKEND}"))

    async def current_connections(self) -> int:
        for line in (await self.ask("show info")).splitlines():
            name, _, value = line.partition(":")
            if name == "CurrConns":
                return int(value)
        raise HaproxyError("no CurrConns in HAProxy's 'show info'")


class HaproxyBalancer:
    """HAProxy balancing one service's HTTP requests over `upstreams()` (the module says how).

    What the stack's status needs of a service proxy: `name`, `port`, `balancing`, `fault`
    (never set: faults are on path proxies) and `open_connections` (refreshed every
    `RESYNC_SECONDS`); `pid` for `stack.json`.
    """

    balancing = Balancing.REQUEST

    def __init__(
        self,
        name: str,
        port: int,
        upstreams: Callable[[], Sequence[Upstream]],
        run_dir: Path,
        log_path: Path,
        slots: int = SLOTS,
        max_body_bytes: int = MAX_REQUEST_BODY_BYTES,
    ) -> None:
        self.name = name
        self.port = port
        self.upstreams = upstreams
        self.slots = slots
        self.max_body_bytes = max_body_bytes
        self.config_path = run_dir / "haproxy.cfg"
        self.socket_path = run_dir / "haproxy.sock"
        self.log_path = log_path
        self.api = RuntimeApi(self.socket_path)
        self.fault = ProxyFault()
        self.open_connections = 0
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._up = False  # answering on its runtime socket

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Write the configuration, start HAProxy, push the membership, keep it in step."""
        binary = find_binary()
        if len(os.fsencode(self.socket_path)) > _SUN_PATH_MAX:
            raise StackError(
                f"the state directory's path is too long for HAProxy's runtime socket "
                f"{self.socket_path} (at most {_SUN_PATH_MAX} bytes): use a shorter --state-dir"
            )
        write_private(
            self.config_path,
            render_config(self.port, self.socket_path, self.slots, self.max_body_bytes, self.name),
        )
        await self._launch(binary)
        self._task = asyncio.get_running_loop().create_task(self._keep_in_step(binary))

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        process, self._process = self._process, None
        if process is not None:
            await asyncio.to_thread(stop_group, process.pid)
            process.wait()

    def changed(self) -> None:
        """The pods may have changed: push the membership now (the daemon's change hook).

        Pushed before this returns, like the asyncio proxy that read the ready pods at every
        pick: a pod the stack kills or stops is out of HAProxy's rotation before the kill's
        answer leaves the control API. Should HAProxy not answer within
        `PUSH_NOW_TIMEOUT_SECONDS`, the loop in `_keep_in_step` pushes it a moment later."""
        self._dirty.set()
        if not self._up or self._closing:
            return
        try:
            current = parse_servers_state(self.api.ask_now(f"show servers state {BACKEND}"))
            self.api.run_now(plan(current, self.upstreams()))
        except (OSError, StackError, ValueError) as exc:
            log.info("HAProxy membership left to the sync loop: %s", exc)

    async def _launch(self, binary: str) -> None:
        self._up = False
        self.socket_path.unlink(missing_ok=True)
        argv = [binary, "-db", "-f", str(self.config_path)]
        setpriv = shutil.which("setpriv")
        if setpriv is not None:  # SIGKILL when the daemon dies (the forking thread: this one)
            argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
        self._process = spawn_group(argv, self.log_path)
        await self._until_up(self._process)
        await self.sync()
        self._up = True

    async def _until_up(self, process: subprocess.Popen[bytes]) -> None:
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                raise ProcessStartError(
                    f"haproxy exited ({process.returncode}) at start; see {self.log_path}"
                )
            try:
                self.open_connections = await self.api.current_connections()
                return
            except (OSError, HaproxyError, TimeoutError):
                if asyncio.get_running_loop().time() > deadline:
                    raise ProcessStartError(
                        f"haproxy did not answer on {self.socket_path} within "
                        f"{START_TIMEOUT_SECONDS:.0f} s; see {self.log_path}"
                    ) from None
            await asyncio.sleep(0.02)

    async def sync(self) -> None:
        """Make HAProxy serve exactly the ready upstreams (only the differences are sent)."""
        await self.api.run(plan(await self.api.slots(), self.upstreams()))

    async def _keep_in_step(self, binary: str) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RESYNC_SECONDS):
                    await self._dirty.wait()
            self._dirty.clear()
            try:
                process = self._process
                if process is not None and process.poll() is not None and not self._closing:
                    log.error(
                        "haproxy exited (%s); starting it again; see %s",
                        process.returncode,
                        self.log_path,
                    )
                    self.restarts += 1
                    await self._launch(binary)
                await self.sync()
                self.open_connections = await self.api.current_connections()
            except (OSError, StackError, TimeoutError, ValueError) as exc:
                log.warning("HAProxy membership not pushed yet: %s", exc)
                await asyncio.sleep(0.2)
                self._dirty.set()
