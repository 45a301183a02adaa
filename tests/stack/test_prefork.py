"""Pods forked from a prefork parent (chaoshelius.stack.prefork): real processes, real forks.

The pod module here is a small file run with `-m` (what `python -m uvicorn` / the MLflow launcher
are in the stack); it records what it sees, so each test checks that a forked pod gets exactly
what a cold `python -m` start would: argv, environment, directory, log, its own process group,
its exit status.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from chaoshelius.stack import mlflow_server
from chaoshelius.stack.pod_specs import RECO_PRELOAD
from chaoshelius.stack.prefork import PreforkParent, interpreter_env_matches, parse_request
from chaoshelius.stack.procs import kill_group, port_accepts
from chaoshelius.stack.supervisor import PodSpec, Supervisor
from chaoshelius.topology import App

POD_MODULE = """
import http.server, json, os, sys
out = sys.argv[1]
with open(out, "w") as f:
    json.dump({"argv": sys.argv, "name": __name__, "cwd": os.getcwd(), "pgid": os.getpgid(0),
               "pid": os.getpid(), "marker": os.environ.get("POD_MARKER"),
               "leak": os.environ.get("ONLY_IN_PARENT"), "preloaded": "colorsys" in sys.modules}, f)
print("pod log line", flush=True)
if sys.argv[2] == "serve":
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
        def log_message(self, *a): pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[3])), H).serve_forever()
sys.exit(int(sys.argv[2]))
"""


def _parent(tmp_path: Path) -> PreforkParent:
    (tmp_path / "podmod.py").write_text(POD_MODULE)
    return PreforkParent(["colorsys", "no_such_module_xyz"], tmp_path / "prefork.log", tmp_path)


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def _podmod_supervisor(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    preload: list[str],
    ports: list[int],
    replicas: int,
    prefork: bool = True,
) -> Supervisor:
    """A supervisor of `replicas` serving podmod pods, its run dir on PYTHONPATH (the parent's
    and a cold pod's alike), each pod in its own zone."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "podmod.py").write_text(POD_MODULE)
    monkeypatch.setenv("PYTHONPATH", str(run))
    spec = PodSpec(
        App.RECO,
        lambda pod: [
            sys.executable,
            "-m",
            "podmod",
            str(pod.work_dir / "o.json"),
            "serve",
            str(pod.port),
        ],  # fmt: skip
        lambda pod: _env(),
        "/ready",
        preload=lambda: preload,
    )
    supervisor = Supervisor(
        {App.RECO: spec},
        {App.RECO: lambda index: f"zone-{index}"},
        {App.RECO: replicas},
        ports,
        tmp_path / "logs",
        run,
        replace_delay=0.1,
        prefork=prefork,
    )
    supervisor.enabled.add(App.RECO)
    return supervisor


def test_a_forked_pod_gets_its_argv_env_directory_log_group_and_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONLY_IN_PARENT", "parent-value")
    parent = _parent(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    out = tmp_path / "seen.json"

    async def scenario() -> int:
        await parent.start()
        env = {k: v for k, v in _env(POD_MARKER="pod-1").items() if k != "ONLY_IN_PARENT"}
        argv = [sys.executable, "-m", "podmod", str(out), "3"]
        child = await parent.spawn(argv, env, work, tmp_path / "pod.log", timeout=60)
        assert child is not None
        try:
            return await asyncio.wait_for(child.wait(), 30)
        finally:
            await parent.aclose()

    assert asyncio.run(scenario()) == 3
    seen = json.loads(out.read_text())
    assert seen["name"] == "__main__" and seen["argv"][1:] == [str(out), "3"]
    assert seen["marker"] == "pod-1" and seen["leak"] is None  # the pod's env, not the parent's
    assert seen["cwd"] == str(work)
    assert seen["pgid"] == seen["pid"]  # its own group: kill_group() reaches it and only it
    assert seen["preloaded"] is True  # imported by the parent, inherited by the fork
    assert "pod log line" in (tmp_path / "pod.log").read_text()
    assert oct((tmp_path / "pod.log").stat().st_mode & 0o777) == oct(0o600)
    assert "no_such_module_xyz" in (tmp_path / "prefork.log").read_text()  # skipped, reported


def test_a_killed_pod_reports_the_signal_and_a_refused_request_starts_nothing(
    tmp_path: Path,
) -> None:
    parent = _parent(tmp_path)
    port = 29561

    async def scenario() -> tuple[int, object, object]:
        await parent.start()
        argv = [sys.executable, "-m", "podmod", str(tmp_path / "o.json"), "serve", str(port)]
        child = await parent.spawn(argv, _env(), tmp_path, tmp_path / "pod.log", timeout=60)
        assert child is not None
        for _ in range(100):
            if port_accepts(port):
                break
            await asyncio.sleep(0.05)
        kill_group(child.pid, signal.SIGKILL)
        code = await asyncio.wait_for(child.wait(), 10)
        refused = await parent.spawn(
            [sys.executable, "-c", "print(1)"], _env(), tmp_path, tmp_path / "x.log", timeout=10
        )
        still = await parent.spawn(
            [sys.executable, "-m", "podmod", str(tmp_path / "o.json"), "0"],
            _env(),
            tmp_path,
            tmp_path / "pod2.log",
            timeout=30,
        )
        await parent.aclose()
        return code, refused, still

    code, refused, still = asyncio.run(scenario())
    assert code == -signal.SIGKILL
    assert refused is None  # only `python -m module` is accepted
    assert still is not None  # and the parent still serves after a refusal


def test_a_pod_outlives_its_dead_parent_and_is_still_watched(tmp_path: Path) -> None:
    parent = _parent(tmp_path)
    port = 29562

    async def scenario() -> int:
        await parent.start()
        argv = [sys.executable, "-m", "podmod", str(tmp_path / "o.json"), "serve", str(port)]
        child = await parent.spawn(argv, _env(), tmp_path, tmp_path / "pod.log", timeout=60)
        assert child is not None
        for _ in range(100):
            if port_accepts(port):
                break
            await asyncio.sleep(0.05)
        await parent.aclose()  # the parent dies; the pod, in its own group, keeps serving
        await asyncio.sleep(0.5)
        assert port_accepts(port) and child.returncode is None
        kill_group(child.pid, signal.SIGKILL)
        return await asyncio.wait_for(child.wait(), 10)  # seen through its pidfd

    assert asyncio.run(scenario()) == -1  # exit status unknown once the parent is gone


def test_requests_are_validated() -> None:
    ok = {"argv": [sys.executable, "-m", "m"], "env": {}, "cwd": "/", "log": "/tmp/x"}  # noqa: S108  a path in a spec the test only validates
    assert parse_request(json.dumps(ok).encode())["argv"][2] == "m"
    for bad in (
        {**ok, "argv": ["/bin/sh", "-c", "id"]},
        {**ok, "argv": [sys.executable, "-c", "print(1)"]},
        {**ok, "env": {"A": 1}},
        {**ok, "cwd": ""},
        [1, 2],
    ):
        with pytest.raises(ValueError):
            parse_request(json.dumps(bad).encode())
    with pytest.raises(ValueError):
        parse_request(b"x" * (2 << 20))


def test_a_changed_interpreter_variable_means_a_cold_start() -> None:
    assert interpreter_env_matches(_env())
    assert not interpreter_env_matches(_env(PYTHONPATH="/elsewhere"))
    assert not interpreter_env_matches({k: v for k, v in _env().items() if k != "PYTHONUNBUFFERED"})


@pytest.mark.parametrize("prefork", [True, False])
def test_the_supervisor_forks_its_pods_and_replaces_a_killed_one(
    tmp_path: Path, prefork: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forked: two pods and the replacement of a killed one, none cold. With the profile's
    `prefork_pods: false` the same pods all start cold, and behave the same."""
    supervisor = _podmod_supervisor(
        tmp_path, monkeypatch, ["colorsys"], list(range(29570, 29590)), 2, prefork
    )

    async def scenario() -> tuple[int, list[str], list[str]]:
        runner = asyncio.create_task(supervisor.run())
        try:
            await _until(lambda: supervisor.all_ready(), 60)
            for pod in supervisor.pods():  # `ps` shows the pod's command, not the parent's
                assert " ".join(psutil.Process(pod.pid).cmdline()).startswith(
                    f"{sys.executable} -m podmod {pod.work_dir}"
                )
            first = sorted(p.name for p in supervisor.pods())
            supervisor.kill(supervisor.pods()[:1])
            await _until(
                lambda: (
                    supervisor.all_ready() and sorted(p.name for p in supervisor.pods()) != first
                ),
                30,
            )
            return supervisor.forked_starts, first, sorted(p.name for p in supervisor.pods())
        finally:
            runner.cancel()
            await supervisor.shutdown()

    forked, first, after = asyncio.run(scenario())
    assert forked == (3 if prefork else 0)
    assert len(set(first) & set(after)) == 1


async def _until(predicate: object, seconds: float) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("modules", "forbidden"),
    [
        # read per replica when imported: prometheus_multiproc_dir, the Host check
        (
            list(mlflow_server.PRELOAD),
            ["mlflow.server", "prometheus_client", "prometheus_flask_exporter"],
        ),
        (["uvicorn.main", "helius_reco.main", *RECO_PRELOAD], []),
    ],
)
def test_the_preload_lists_import_nothing_that_reads_a_pods_environment(
    modules: list[str], forbidden: list[str]
) -> None:
    """What a parent imports must not depend on one pod's environment: the env-reading modules
    stay out, and the service's settings cache is still empty after the imports."""
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"no = {forbidden!r}\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in no or m in no]\n"
        "assert not bad, bad\n"
        "from helius_reco.core.config import get_settings\n"
        "assert get_settings.cache_info().currsize == 0\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_pod_stopped_while_its_fork_waits_for_the_imports_is_not_left_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent's first imports take seconds; a pod stopped meanwhile (a drain, a profile
    change, a shutdown) has no pid yet. When its fork arrives it must be stopped, not left
    serving unsupervised."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "slowimport.py").write_text("import time\ntime.sleep(2)\n")
    supervisor = _podmod_supervisor(tmp_path, monkeypatch, ["slowimport"], [29595], 1)

    async def scenario() -> None:
        runner = asyncio.create_task(supervisor.run())
        try:
            await _until(lambda: bool(supervisor.pods()), 10)
            supervisor.enabled.discard(App.RECO)  # stopped before the parent has imported
            supervisor.poke()
            await _until(lambda: not supervisor.pods(), 20)
            await asyncio.sleep(0.5)
            assert supervisor.forked_starts == 1
            assert not port_accepts(29595)
        finally:
            runner.cancel()
            await supervisor.shutdown()

    asyncio.run(scenario())
