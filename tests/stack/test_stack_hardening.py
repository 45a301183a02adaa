"""The local stack's hardening that needs no running stack (issue 11): selectors that cannot
stall the event loop, `down` that signals only its own processes, directory modes given back,
loops that survive one failing step, and latency that ends with its fault.

Each test failed before its fix (the finding it is named after) and passes after.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.ports import free_port

from chaoshelius.stack import lifecycle, selectors
from chaoshelius.stack.api_models import MAX_SELECTOR_CHARS
from chaoshelius.stack.config import StackConfig
from chaoshelius.stack.daemon import Stack
from chaoshelius.stack.ports import StackPorts
from chaoshelius.stack.postgres import PG_HOME_ENV, PostgresServer
from chaoshelius.stack.procs import identify, pid_alive
from chaoshelius.stack.proxy import ProxyFault, TcpProxy
from chaoshelius.stack.state import StackPaths, StackPids, StackState, write_state
from chaoshelius.stack.supervisor import Supervisor
from chaoshelius.topology import App, FaultKind, PathMode


# -- selectors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "selector",
    [
        "a" * MAX_SELECTOR_CHARS,
        "a" + " " * (MAX_SELECTOR_CHARS - 2) + "x",  # backtracked quadratically in the old regex
        "app in (" + "x," * (MAX_SELECTOR_CHARS // 2 - 8) + ")",
        "(" * MAX_SELECTOR_CHARS,
        "app=" + "x " * (MAX_SELECTOR_CHARS // 2 - 4),
        "," * MAX_SELECTOR_CHARS,
    ],
    ids=["one-long-key", "key-then-spaces", "long-in-list", "open-parens", "spaces", "commas"],
)
def test_selector_at_the_cap_parses_in_well_under_a_millisecond_per_hundred_chars(
    selector: str,
) -> None:
    assert len(selector) <= MAX_SELECTOR_CHARS
    started = time.perf_counter()
    for _ in range(20):
        try:
            selectors.parse(selector)
        except selectors.SelectorError:
            pass
    per_parse = (time.perf_counter() - started) / 20
    assert per_parse < 0.005, f"{per_parse * 1000:.2f} ms to parse {len(selector)} characters"


def test_selector_over_the_cap_is_refused_before_parsing() -> None:
    """32 k characters took 3.4 s (18 s on a loaded machine) in the old parser, on the loop
    that runs the proxies and the fault reaper."""
    for huge in ("app in (" + "x," * 16_000 + ")", "a" + " " * 32_000 + "x"):
        started = time.perf_counter()
        with pytest.raises(selectors.SelectorError, match=f"at most {MAX_SELECTOR_CHARS}"):
            selectors.parse(huge)
        assert time.perf_counter() - started < 0.01


def test_selector_grammar_is_unchanged() -> None:
    labels = {"app": "mlflow", "pod": "mlflow-1", "zone": "zone-a", "namespace": "helius"}
    for selector, expected in [
        ("", True),
        ("app=mlflow", True),
        ("app==mlflow,zone=zone-a", True),
        ("app!=mlflow", False),
        ("zone in (zone-b, zone-a)", True),
        ("zone notin (zone-a)", False),
        ("topology.kubernetes.io/zone=zone-a,name=mlflow-1", True),
        (" app = mlflow , namespace in (helius) ", True),
    ]:
        assert selectors.matches(selector, labels) is expected, selector
    for bad in ["color=red", "app in mlflow", "app", "app=", "=x", "app ~ x", "app in(x"]:
        with pytest.raises(selectors.SelectorError):
            selectors.parse(bad)


def test_a_selector_is_parsed_once_per_request_not_once_per_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> int:
        supervisor = Supervisor(
            specs={App.MLFLOW: None, App.RECO: None},  # type: ignore[dict-item]
            placements={App.MLFLOW: lambda i: "zone-a", App.RECO: lambda i: "zone-a"},
            replicas={App.MLFLOW: 0, App.RECO: 0},
            pod_ports=range(1),
            logs_dir=tmp_path,
            run_dir=tmp_path,
            replace_delay=1.0,
        )
        from chaoshelius.stack.supervisor import Pod, Slot

        for index in range(50):
            pod = Pod(f"mlflow-{index}", App.MLFLOW, "zone-a", index, 1, tmp_path, tmp_path)
            supervisor.slots[App.MLFLOW].append(Slot(App.MLFLOW, index, "zone-a", pod))
        calls = 0
        real = selectors._split_terms

        def counting(selector: str) -> list[str]:
            nonlocal calls
            calls += 1
            return real(selector)

        monkeypatch.setattr(selectors, "_split_terms", counting)
        assert len(supervisor.pods("app=mlflow,zone in (zone-a)")) == 50
        await supervisor._http.aclose()
        return calls

    assert asyncio.run(scenario()) == 1


# -- processes recorded in a stale stack.json ---------------------------------------------------
@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """Someone else's process, leading its own process group (as a pod or Prometheus would)."""
    process = subprocess.Popen(["sleep", "120"], start_new_session=True)  # noqa: S607  sleep from PATH: a child to reap
    yield process
    process.kill()
    process.wait()


def _stale_state(paths: StackPaths, pid: int, identities: dict[str, Any]) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    write_state(
        paths.state_file,
        StackState(
            phase="ready",
            base_port=1,  # its control port: nothing listens there
            pids=StackPids(supervisor=pid, prometheus=pid, postgres=None),
            pod_process_groups=[pid],
            identities=identities,
        ),
    )


def test_down_does_not_signal_a_recorded_pid_that_is_someone_else_now(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    paths = StackPaths(tmp_path / "state")
    # the pid was ours once (another start time, another command line); now it is the bystander's
    old = {"create_time": 1.0, "cmdline": ["python", "-m", "chaoshelius.stack.daemon"]}
    _stale_state(paths, bystander.pid, {str(bystander.pid): old})
    lifecycle.down(paths.root, timeout=2)
    time.sleep(0.2)
    assert bystander.poll() is None, "down killed a process that was not the stack's"
    assert pid_alive(bystander.pid)

    # a stack.json that recorded no identity at all (an older version) is not trusted either
    _stale_state(paths, bystander.pid, {})
    lifecycle.down(paths.root, timeout=2)
    time.sleep(0.2)
    assert bystander.poll() is None


def test_down_still_stops_a_recorded_process_that_is_the_same_one(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    """The check is not `never signal`: the process stack.json describes is stopped."""
    paths = StackPaths(tmp_path / "state")
    identity = identify(bystander.pid)
    assert identity is not None
    _stale_state(paths, bystander.pid, {str(bystander.pid): identity.to_json()})
    lifecycle.down(paths.root, timeout=2)
    bystander.wait(timeout=10)
    assert not paths.state_file.exists()


# -- directory modes ----------------------------------------------------------------------------
@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to another user")
def test_as_root_postgres_needs_no_mode_change_on_the_state_dirs_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`_grant_traversal` added o+x to every parent (e.g. /root) and never took it back."""
    monkeypatch.setenv(PG_HOME_ENV, str(tmp_path / "pg-home"))
    tmp_path.chmod(0o755)
    home = tmp_path / "home"  # like /root: private
    home.mkdir(mode=0o700)
    home.chmod(0o700)
    stack_dir = home / "stack"
    stack_dir.mkdir(mode=0o700)
    (stack_dir / "logs").mkdir(mode=0o700)  # as StackPaths.create() makes it
    data = stack_dir / "postgres" / "data"
    server = PostgresServer(data, port=1, log_path=stack_dir / "logs" / "postgres.log")
    server._prepare_dirs()
    for path in (home, stack_dir, stack_dir / "postgres", stack_dir / "logs"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    assert server.data_dir.is_relative_to(tmp_path / "pg-home")
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
    assert (stack_dir / "logs" / "postgres.log").resolve() == server.server_log

    # a cluster whose state directory is gone is collected at the next start, not another's
    kept = PostgresServer(tmp_path / "other" / "postgres" / "data", port=1)
    kept._prepare_dirs()
    shutil.rmtree(stack_dir)
    PostgresServer(tmp_path / "third" / "postgres" / "data", port=1)._prepare_dirs()
    assert not server.data_dir.exists()
    assert kept.data_dir.exists()


# -- loops that must not die with one step ------------------------------------------------------
def test_the_fault_reaper_survives_an_error_reverting_one_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> list[str]:
        stack = Stack(StackPaths(tmp_path), StackPorts(31900), StackConfig())
        reverted: list[str] = []

        def revert(fault: Any) -> None:
            if not reverted:
                reverted.append("boom")
                raise OSError(28, "No space left on device")
            reverted.append(fault.id)

        monkeypatch.setattr(stack.faults, "_revert", revert)
        now = time.time()
        first, _ = stack.faults.book.add(FaultKind.DRAIN, "zone-a", {}, 0.05, now)
        second, _ = stack.faults.book.add(FaultKind.DRAIN, "zone-b", {}, 0.3, now)
        reaper = asyncio.get_running_loop().create_task(stack.faults.reap())
        await asyncio.sleep(0.8)
        alive = not reaper.done()
        reaper.cancel()
        await asyncio.gather(reaper, return_exceptions=True)
        await stack.supervisor._http.aclose()
        assert alive, "the reaper died"
        return reverted

    assert asyncio.run(scenario()) == ["boom", "drain-2"]


def test_the_supervisor_loop_survives_an_error_in_one_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> int:
        supervisor = Supervisor({}, {}, {}, range(1), tmp_path, tmp_path, 1.0)
        passes = 0

        def reconcile() -> None:
            nonlocal passes
            passes += 1
            if passes == 1:
                raise RuntimeError("no free pod port left")

        monkeypatch.setattr(supervisor, "reconcile", reconcile)
        loop = asyncio.get_running_loop().create_task(supervisor.run())
        await asyncio.sleep(0.05)
        supervisor.poke()
        await asyncio.sleep(0.05)
        supervisor.poke()
        await asyncio.sleep(0.05)
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await supervisor._http.aclose()
        return passes

    assert asyncio.run(scenario()) >= 3


# -- latency ends with its fault ----------------------------------------------------------------
def test_a_latency_fault_does_not_outlast_its_removal_by_latency_ms() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def scenario() -> float:
        upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = upstream.sockets[0].getsockname()[1]
        proxy = TcpProxy("edge", 0, lambda: ("127.0.0.1", port))
        proxy._server = await asyncio.start_server(proxy._handle, "127.0.0.1", 0)
        proxy_port = proxy._server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        proxy.set_fault(ProxyFault(PathMode.LATENCY, latency_ms=5_000))
        writer.write(b"ping")
        await writer.drain()
        await asyncio.sleep(0.3)  # the chunk is held by the 5 s latency now
        started = time.monotonic()
        proxy.clear_fault()  # what the TTL reaper (or a restore) does
        assert await asyncio.wait_for(reader.read(4), 10) == b"ping"
        elapsed = time.monotonic() - started
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.1)  # the proxy and the echo see the EOF and close their ends
        await proxy.close()
        upstream.close()
        await upstream.wait_closed()
        return elapsed

    assert asyncio.run(scenario()) < 0.5


def test_state_files_are_written_for_the_owner_only(tmp_path: Path) -> None:
    paths = StackPaths(tmp_path / "state")
    paths.create()
    write_state(paths.state_file, StackState(profile={"reco_env": {"SECRET": "x"}}))
    assert stat.S_IMODE(paths.root.stat().st_mode) == 0o700
    for directory in (paths.logs, paths.run, paths.cache, paths.artifacts):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert stat.S_IMODE(paths.state_file.stat().st_mode) == 0o600
    assert json.loads(paths.state_file.read_text())["profile"]["reco_env"] == {"SECRET": "x"}


@pytest.mark.skipif(
    os.geteuid() != 0, reason="the cluster lives outside the state dir only as root"
)
def test_a_cluster_that_outlived_its_state_dir_is_recreated(tmp_path: Path) -> None:
    """A new clone at the same path as a deleted one finds the old cluster under the PG home but
    not its password (which lived in the deleted state dir): it must start afresh, not refuse
    (seen in a CI-like re-clone). The default PG home: the server user cannot enter pytest's
    private tmp dir."""
    data = tmp_path / "clone" / ".helius" / "postgres" / "data"
    port = free_port()
    first = PostgresServer(data, port=port)
    first.start()
    first.stop()
    shutil.rmtree(tmp_path / "clone")  # the clone is deleted; the cluster under pg-home stays
    data.mkdir(parents=True)  # a new clone's stack makes its state dirs before PostgreSQL starts
    again = PostgresServer(data, port=port)
    try:
        again.start()
        assert again.accepts_connections()
    finally:
        again.stop()
