"""Pods forked from a process that imported their heavy modules once (gunicorn's `--preload`,
Android's zygote).

Why: importing MLflow costs a recommender ~5 s of CPU and an MLflow server ~8 s, and three of
them start at once on two shared cores (a profile change, an MLflow restart): 12 s for three
recommenders, ~28 s for three MLflow servers, most of it the same imports. A fork shares the
imported modules copy-on-write, so a pod's start is its own work only: the app, its model, its
first registry call.

The parent (`python -m chaoshelius.stack.prefork MODULE...`) imports MODULEs, says `ready`, then
serves the supervisor on stdin/stdout, one JSON object per line:

- request `{"argv": [python, "-m", module, args...], "env": {...}, "cwd": DIR, "log": FILE}`
  -> reply `{"started": PID}` or `{"error": "..."}`; the child leads its own process group
  (set by parent and child both, so it exists when the reply is read: the supervisor kills
  pods by group), takes the environment, working directory and log, and runs `module` as
  `__main__` exactly as `python -m` would;
- `{"exited": PID, "code": N}` when a child ends (N < 0: killed by signal -N, like Popen).

What the parent never does: read a pod's environment, open a socket, start a thread, call a
settings cache. Only modules whose import does not depend on the pod's environment may be
preloaded (`mlflow.server` reads `prometheus_multiproc_dir` when imported: it stays out). A
module that fails to import is skipped and reported; the pod then fails on it exactly as a
cold start would, in its own log. Only `python -m module` commands are accepted, and only the
supervisor holds the pipe: nothing else can name code to run here. End of input (the
supervisor is gone) ends the parent; its children are pods the stack's sweep knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import runpy
import select
import signal
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import setproctitle

from chaoshelius.stack.procs import kill_group
from chaoshelius.stack.state import open_private_log

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 1 << 20  # an environment and an argv, not a payload
REAP_INTERVAL_SECONDS = 0.1


class RequestError(ValueError):
    """The request is not a `python -m` pod command."""


def preload(modules: list[str]) -> list[str]:
    """Import `modules`; returns those that failed (reported, not fatal)."""
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001  the pod's own start reports it properly
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    return failed


def parse_request(line: bytes) -> dict[str, Any]:
    """Validate a request: argv `[this python, -m, module, ...]`, env, cwd, log."""
    if len(line) > MAX_REQUEST_BYTES:
        raise RequestError(f"request longer than {MAX_REQUEST_BYTES} bytes")
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise RequestError(f"request is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise RequestError("request is not an object")
    argv, env = data.get("argv"), data.get("env")
    if (
        not isinstance(argv, list)
        or len(argv) < 3
        or not all(isinstance(a, str) for a in argv)
        or argv[:2] != [sys.executable, "-m"]
    ):
        raise RequestError(f"argv must be [{sys.executable}, -m, module, ...]")
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise RequestError("env must map strings to strings")
    for key in ("cwd", "log"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise RequestError(f"{key} must be a path")
    return data


def parent_env() -> dict[str, str]:
    """The parent's environment: the supervisor's, unbuffered like every pod."""
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def interpreter_env_matches(env: Mapping[str, str]) -> bool:
    """True if `env` sets the interpreter's start-up variables (PYTHON*: the path, the hash
    seed, the warnings...) as the parent had them; a fork cannot change those afterwards."""
    parent = parent_env()
    keys = {k for k in (*env, *parent) if k.startswith("PYTHON")}
    return all(env.get(k) == parent.get(k) for k in keys)


def _become(request: dict[str, Any], started: int) -> None:
    """In the child: its own process group and the pod's command as its title (`ps`, psutil and
    the stack's process identities see the pod, not this parent), both done before `started` is
    closed (the parent replies only then); the pod's log on stdout/stderr, /dev/null on stdin,
    its environment and directory, then its module as `__main__` (this never returns)."""
    code = 1
    try:
        os.setpgid(0, 0)
        setproctitle.setproctitle(" ".join(request["argv"]))
        os.close(started)
        with open_private_log(Path(request["log"])) as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115  fd 0 lives as long as the pod
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        module = request["argv"][2]
        sys.argv = [module, *request["argv"][3:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001  the pod's crash goes to its log, like a cold start
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _send(out: BinaryIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message).encode() + b"\n")
    out.flush()


def _reap(out: BinaryIO, children: set[int]) -> None:
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            children.discard(pid)
            # as Popen reports it: the exit code, or -signal
            _send(out, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def serve(modules: list[str]) -> int:
    # Python warns on every fork of a process with threads; ours are allocators' helpers
    # (pyarrow's jemalloc background thread), which handle fork themselves (pthread_atfork).
    warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
    failed = preload(modules)
    for failure in failed:
        print(f"prefork: preload skipped {failure}", file=sys.stderr, flush=True)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print() of a preloaded module must not corrupt the protocol
    _send(out, {"ready": os.getpid(), "skipped": len(failed)})
    children: set[int] = set()
    pending = b""
    while True:
        readable, _, _ = select.select([0], [], [], REAP_INTERVAL_SECONDS)
        _reap(out, children)
        if not readable:
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            return 0  # the supervisor is gone
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            _handle(out, line, children)
        if len(pending) > MAX_REQUEST_BYTES:
            pending = b""
            _send(out, {"error": f"request longer than {MAX_REQUEST_BYTES} bytes"})


def _handle(out: BinaryIO, line: bytes, children: set[int]) -> None:
    try:
        request = parse_request(line)
    except RequestError as exc:
        _send(out, {"error": str(exc)})
        return
    gate_read, gate_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        out.close()
        os.close(gate_read)
        _become(request, gate_write)
    os.close(gate_write)
    try:
        os.setpgid(pid, pid)
    except OSError:  # the child did it first (EACCES once it ran its module) or is gone
        pass
    os.read(gate_read, 1)  # EOF once the child has its group and its title (or died)
    os.close(gate_read)
    children.add(pid)
    _send(out, {"started": pid})


# -- the supervisor's side (asyncio) ---------------------------------------------------------
class ForkedProcess:
    """A pod forked by a prefork parent: the part of asyncio's Process the supervisor uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._done = asyncio.Event()

    def exited(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
        self._done.set()

    async def wait(self) -> int:
        await self._done.wait()
        assert self.returncode is not None  # noqa: S101  narrows the type for mypy
        return self.returncode


class PreforkParent:
    """One `python -m chaoshelius.stack.prefork` per app, started on first use."""

    def __init__(self, modules: Sequence[str], log_path: Path, cwd: Path) -> None:
        self.modules = list(modules)
        self.log_path = log_path
        self.cwd = cwd
        self.process: asyncio.subprocess.Process | None = None
        self.children: dict[int, ForkedProcess] = {}
        self._reply: asyncio.Future[dict[str, Any]] | None = None
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._gone = False

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None and not self._gone

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.cwd.mkdir(parents=True, exist_ok=True)
        with open_private_log(self.log_path) as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "chaoshelius.stack.prefork", *self.modules,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                cwd=self.cwd,
                env=parent_env(),
                start_new_session=True,
                limit=MAX_REQUEST_BYTES,
            )  # fmt: skip
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def spawn(
        self, argv: list[str], env: Mapping[str, str], cwd: Path, log_file: Path, timeout: float
    ) -> ForkedProcess | None:
        """Fork one pod; None if this parent cannot (gone, refused, too slow: start it cold)."""
        async with self._lock:
            if not self.alive or self.process is None or self.process.stdin is None:
                return None
            self._reply = asyncio.get_running_loop().create_future()
            request = {"argv": argv, "env": dict(env), "cwd": str(cwd), "log": str(log_file)}
            try:
                self.process.stdin.write(json.dumps(request).encode() + b"\n")
                await self.process.stdin.drain()
                reply = await asyncio.wait_for(self._reply, timeout)
            except (TimeoutError, ConnectionError, OSError):
                reply = {"error": "no reply"}
                self.close()  # a late fork would be a pod nobody supervises
            finally:
                self._reply = None
        child = self.children.get(reply.get("started", -1))
        if child is None:
            log.warning("prefork %s: %s; starting the pod cold", self.modules, reply)
        return child

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None  # noqa: S101  narrows the type for mypy
        try:
            while line := await self.process.stdout.readline():
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if "exited" in message:
                    child = self.children.pop(message["exited"], None)
                    if child is not None:
                        child.exited(int(message["code"]))
                elif "started" in message or "error" in message:
                    if "started" in message:
                        pid = int(message["started"])
                        self.children[pid] = ForkedProcess(pid)
                    if self._reply is not None and not self._reply.done():
                        self._reply.set_result(message)
        except (ValueError, asyncio.LimitOverrunError, ConnectionError):
            pass
        self._gone = True
        if self._reply is not None and not self._reply.done():
            self._reply.set_result({"error": "the prefork parent exited"})
        for child in list(self.children.values()):
            self._watch_orphan(child)

    def _watch_orphan(self, child: ForkedProcess) -> None:
        """The parent died before its child: watch the child by pidfd (exit code unknown)."""
        try:
            fd = os.pidfd_open(child.pid)
        except OSError:
            child.exited(-1)
            return
        loop = asyncio.get_running_loop()

        def _ended() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            child.exited(-1)

        loop.add_reader(fd, _ended)

    def close(self) -> None:
        """Stop the parent (its children are pods in their own groups: they stay)."""
        if self.process is not None and self.process.returncode is None:
            kill_group(self.process.pid, signal.SIGKILL)
        self._gone = True

    async def aclose(self) -> None:
        """close(), then wait for the parent and its pipes (no transport left open)."""
        self.close()
        if self.process is not None:
            if self.process.stdin is not None:
                self.process.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 5)
        if self._reader is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 5)


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:]))
