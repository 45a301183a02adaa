"""Pods like a ReplicaSet: slots per app, each running one pod process at a time.

A slot is (app, index, zone). Its pod is a child process in its own process group with a fresh
name (`<app>-<5 hex>`) and a fresh port each time it is (re)created. A pod that dies (or is
killed) is replaced after `replace_delay_seconds` (with exponential back-off while it keeps
crashing before ever becoming ready). A drained zone or a scale-down fault makes slots
undesired: their pods are stopped and not replaced until the fault is undone or expires.
Readiness is probed continuously (a real call per app); the service proxies read it. A spec's
`readiness` (a profile's `mlflow_readiness`) sets the period, timeout and failure threshold, and
an initial delay like the kubelet's `initialDelaySeconds`: no Ready before it has passed.
Liveness is probed like the kubelet does, with the manifests' path, period, timeout and failure
threshold (chaoshelius.topology): once a pod has been ready, `failure_threshold` failed probes
in a row restart it (SIGKILL, then the slot replaces it), so a liveness endpoint tied to a
dependency shows up locally as it would on a cluster.
A spec with a preload list forks its `python -m` pods from a parent that imported those modules
once (chaoshelius.stack.prefork); if that parent is gone or refuses, the pod starts cold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chaoshelius.stack import selectors
from chaoshelius.stack.config import ReadinessProbe
from chaoshelius.stack.prefork import ForkedProcess, PreforkParent, interpreter_env_matches
from chaoshelius.stack.procs import LOOPBACK, kill_group, port_is_free
from chaoshelius.topology import NAMESPACE, ZONE_LABEL, App, Probe

log = logging.getLogger(__name__)

READINESS = ReadinessProbe()  # every 0.5 s, 1.5 s timeout, 2 failures to unready, no delay
PROBE_PERIOD_SECONDS = READINESS.period_seconds
PROBE_TIMEOUT_SECONDS = READINESS.timeout_seconds
STOP_GRACE_SECONDS = 3.0
MAX_BACKOFF_SECONDS = 30.0
PREFORK_TIMEOUT_SECONDS = 120.0  # the parent's imports (once) and one fork


@dataclass(frozen=True)
class PodSpec:
    """How to run one app's pods: argv/env built from (pod, slot), and the readiness path."""

    app: App
    argv: Callable[[Pod], list[str]]
    env: Callable[[Pod], dict[str, str]]
    ready_path: str
    liveness: Probe | None = None
    # modules imported once by a prefork parent that forks these pods; None: cold starts
    preload: Callable[[], Sequence[str]] | None = None
    readiness: ReadinessProbe = READINESS


@dataclass(eq=False)
class Pod:
    name: str
    app: App
    zone: str
    slot: int
    port: int
    log_path: Path
    work_dir: Path
    started_at: float = field(default_factory=time.time)
    process: asyncio.subprocess.Process | ForkedProcess | None = None
    ready: bool = False
    stopping: bool = False
    exited: bool = False
    failures: int = 0
    liveness_failures: int = 0
    liveness_kills: int = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def state(self) -> str:
        if self.exited:
            return "terminated"
        if self.stopping:
            return "terminating"
        return "ready" if self.ready else "not-ready"

    @property
    def labels(self) -> dict[str, str]:
        return {"app": str(self.app), "pod": self.name, "zone": self.zone, "namespace": NAMESPACE}


@dataclass(eq=False)
class Slot:
    app: App
    index: int
    zone: str
    pod: Pod | None = None
    restarts: int = 0
    crashes_before_ready: int = 0
    next_start: float = 0.0


def new_pod_name(app: App) -> str:
    return f"{app}-{secrets.token_hex(3)[:5]}"


class Supervisor:
    """Keeps each enabled app's desired slots running; all methods run on the event loop."""

    def __init__(
        self,
        specs: Mapping[App, PodSpec],
        placements: Mapping[App, Callable[[int], str]],
        replicas: Mapping[App, int],
        pod_ports: Sequence[int],
        logs_dir: Path,
        run_dir: Path,
        replace_delay: float,
        on_change: Callable[[], None] = lambda: None,
        prefork: bool = True,
    ) -> None:
        self.specs = dict(specs)
        self.placements = dict(placements)
        self.replicas = dict(replicas)
        self.pod_ports = list(pod_ports)
        self.logs_dir = logs_dir
        self.run_dir = run_dir
        self.replace_delay = replace_delay
        self.on_change = on_change
        self.enabled: set[App] = set()
        self.drained: set[str] = set()
        self.scale: dict[App, int] = {}
        # apps whose replica 0 must be ready once before the others start (MLflow: the first
        # server migrates the schema; several at once on a fresh database race and crash)
        self.leader_first: set[App] = set()
        self.leader_ready: set[App] = set()
        self.slots: dict[App, list[Slot]] = {app: [] for app in specs}
        self._port_cursor = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._http = httpx.AsyncClient(timeout=PROBE_TIMEOUT_SECONDS)
        self._wakeup = asyncio.Event()
        self.prefork = prefork
        self._preforks: dict[App, PreforkParent] = {}
        self._prefork_locks: dict[App, asyncio.Lock] = {app: asyncio.Lock() for app in specs}
        self.forked_starts = 0

    # -- queries ---------------------------------------------------------------------------
    def pods(self, selector: str | selectors.Selector | None = None) -> list[Pod]:
        found = [
            slot.pod
            for slots in self.slots.values()
            for slot in slots
            if slot.pod is not None and not slot.pod.exited
        ]
        terms = selectors.parse(selector)  # once, not once per pod
        return [pod for pod in found if selectors.matches(terms, pod.labels)]

    def ready_upstreams(self, app: App) -> list[tuple[str, int]]:
        return [(LOOPBACK, pod.port) for pod in self.pods() if pod.app is app and pod.ready]

    def slot_of(self, pod: Pod) -> Slot:
        return self.slots[pod.app][pod.slot]

    def desired(self, app: App) -> int:
        return self.scale.get(app, self.replicas[app]) if app in self.enabled else 0

    def wants(self, slot: Slot) -> bool:
        return slot.index < self.desired(slot.app) and slot.zone not in self.drained

    def all_ready(self, apps: Sequence[App] | None = None) -> bool:
        for app in apps or list(self.slots):
            for slot in self._ensure_slots(app):
                if self.wants(slot) and (slot.pod is None or not slot.pod.ready):
                    return False
        return True

    def pod_rows(self) -> list[dict[str, Any]]:
        rows = []
        for pod in self.pods():
            rows.append(
                {
                    "name": pod.name,
                    "app": str(pod.app),
                    "zone": pod.zone,
                    "namespace": NAMESPACE,
                    "labels": {**pod.labels, ZONE_LABEL: pod.zone},
                    "state": pod.state,
                    "ready": pod.ready,
                    "restarts": self.slot_of(pod).restarts,
                    "slot": pod.slot,
                    "port": pod.port,
                    "url": pod.url,
                    "pid": pod.pid,
                    "started_at": pod.started_at,
                    "log": str(pod.log_path),
                }
            )
        return sorted(rows, key=lambda row: (row["app"], row["slot"]))

    def leader(self, app: App) -> Pod | None:
        """The running pod of the app's slot 0, whatever its readiness (None if none)."""
        slots = self.slots[app]
        pod = slots[0].pod if slots else None
        return pod if pod is not None and not pod.exited else None

    # -- verbs: each changes what is desired, then wakes the reconcile loop ------------------
    def enable(self, apps: Iterable[App], leader_first: Iterable[App] = ()) -> None:
        """Run the apps' desired pods; `leader_first` apps start replica 0 alone first."""
        self.leader_first.update(leader_first)
        self.enabled.update(apps)
        self.poke()

    def disable(self, app: App) -> None:
        """Stop every pod of `app` (and start none) until it is enabled again."""
        self.enabled.discard(app)
        self.poke()

    def reschedule(self, app: App, placement: Callable[[int], str], replicas: int) -> None:
        """Fresh slots for a disabled `app` with a new placement and replica count; enable it."""
        self.slots[app] = []
        self.placements[app] = placement
        self.replicas[app] = replicas
        self.enable([app])

    def drain_zone(self, zone: str) -> None:
        self.drained.add(zone)
        self.poke()

    def uncordon_zone(self, zone: str) -> None:
        self.drained.discard(zone)
        self.poke()

    def set_scale(self, app: App, replicas: int) -> None:
        """Override the app's replica count (a scale fault) until `clear_scale`."""
        self.scale[app] = replicas
        self.poke()

    def clear_scale(self, app: App) -> None:
        self.scale.pop(app, None)
        self.poke()

    # -- actions ---------------------------------------------------------------------------
    def poke(self) -> None:
        self._wakeup.set()

    def kill(self, pods: Sequence[Pod]) -> list[str]:
        """SIGKILL the pods' process groups; the slots replace them after the delay."""
        killed = []
        for pod in pods:
            if pod.pid is not None and not pod.exited:
                kill_group(pod.pid, signal.SIGKILL)
                pod.ready = False
                killed.append(pod.name)
        self.on_change()
        return killed

    async def run(self) -> None:
        """Reconcile forever (cancel to stop). An error in one pass (a port scan, a log file
        that cannot be opened...) is logged and the next pass runs: the loop that replaces
        pods must not die with one of them."""
        while True:
            try:
                self.reconcile()
            except Exception:
                log.exception("reconcile pass failed; the supervisor loop goes on")
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), 0.25)

    def reconcile(self) -> None:
        now = time.monotonic()
        for app in self.slots:
            for slot in self._ensure_slots(app):
                pod = slot.pod
                if self.wants(slot):
                    waiting = app in self.leader_first and app not in self.leader_ready
                    if pod is None and now >= slot.next_start and not (waiting and slot.index):
                        self._start(slot)
                elif pod is not None and not pod.stopping and not pod.exited:
                    self._stop(pod)

    async def shutdown(self) -> None:
        """Stop every pod (SIGTERM, then SIGKILL), wait for them, close the probe client."""
        self.enabled.clear()
        pods = self.pods()
        for pod in pods:
            self._stop(pod)
        deadline = time.monotonic() + STOP_GRACE_SECONDS + 3
        while any(not pod.exited for pod in pods) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for pod in pods:
            if pod.pid is not None:
                kill_group(pod.pid, signal.SIGKILL)
        for parent in self._preforks.values():
            await parent.aclose()
        for task in list(self._tasks):
            task.cancel()
        await self._http.aclose()

    # -- internals -------------------------------------------------------------------------
    def _ensure_slots(self, app: App) -> list[Slot]:
        slots = self.slots[app]
        while len(slots) < max(self.desired(app), self.replicas[app]):
            index = len(slots)
            slots.append(Slot(app, index, self.placements[app](index)))
        return slots

    def _next_port(self) -> int:
        used = {pod.port for pod in self.pods()}
        for _ in range(len(self.pod_ports)):
            port = self.pod_ports[self._port_cursor % len(self.pod_ports)]
            self._port_cursor += 1
            if port not in used and port_is_free(port):
                return port
        raise RuntimeError("no free pod port left in the stack's pod port range")

    def _start(self, slot: Slot) -> None:
        spec = self.specs[slot.app]
        name = new_pod_name(slot.app)
        pod = Pod(
            name=name,
            app=slot.app,
            zone=slot.zone,
            slot=slot.index,
            port=self._next_port(),
            log_path=self.logs_dir / f"{name}.log",
            work_dir=self.run_dir / name,
        )
        slot.pod = pod
        log.info(
            "pod %s starting (slot %s, zone %s, port %s)", name, slot.index, slot.zone, pod.port
        )
        self._spawn(self._run_pod(pod, spec))
        self.on_change()

    def _stop(self, pod: Pod) -> None:
        pod.stopping = True
        pod.ready = False
        if pod.pid is not None:
            kill_group(pod.pid, signal.SIGTERM)
            self._spawn(self._kill_later(pod))
        self.on_change()

    async def _kill_later(self, pod: Pod) -> None:
        await asyncio.sleep(STOP_GRACE_SECONDS)
        if not pod.exited and pod.pid is not None:
            kill_group(pod.pid, signal.SIGKILL)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_pod(self, pod: Pod, spec: PodSpec) -> None:
        pod.work_dir.mkdir(parents=True, exist_ok=True)
        pod.log_path.parent.mkdir(parents=True, exist_ok=True)
        slot = self.slot_of(pod)
        argv, env = spec.argv(pod), spec.env(pod)
        pod.process = await self._fork(pod, spec, argv, env)
        if pod.process is None and not pod.stopping:
            with pod.log_path.open("ab") as log_file:
                try:
                    pod.process = await asyncio.create_subprocess_exec(
                        *argv,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=log_file,
                        stderr=asyncio.subprocess.STDOUT,
                        env=env,
                        cwd=pod.work_dir,
                        start_new_session=True,
                    )
                except OSError as exc:
                    log_file.write(f"cannot start pod {pod.name}: {exc}\n".encode())
                    pod.exited = True
        if pod.stopping and pod.pid is not None:
            # stopped while its fork waited for the parent's imports: _stop had no pid to signal
            kill_group(pod.pid, signal.SIGTERM)
            self._spawn(self._kill_later(pod))
        loop = asyncio.get_running_loop()
        probes = [loop.create_task(self._probe(pod)), loop.create_task(self._liveness(pod))]
        returncode = await pod.process.wait() if pod.process is not None else -1
        for probe in probes:
            probe.cancel()
        if pod.pid is not None:
            kill_group(pod.pid, signal.SIGKILL)  # no orphan keeps serving (uvicorn children)
        pod.exited = True
        pod.ready = False
        log.info("pod %s exited with %s", pod.name, returncode)
        shutil.rmtree(pod.work_dir, ignore_errors=True)
        if slot.pod is pod:
            slot.pod = None
            if not pod.stopping:
                slot.restarts += 1
                slot.crashes_before_ready += 1
                backoff = self.replace_delay * 2 ** max(0, slot.crashes_before_ready - 2)
                slot.next_start = time.monotonic() + min(backoff, MAX_BACKOFF_SECONDS)
        self.on_change()
        self.poke()

    async def _fork(
        self, pod: Pod, spec: PodSpec, argv: list[str], env: dict[str, str]
    ) -> ForkedProcess | None:
        """The pod forked from its app's prefork parent (started on first use); None: cold."""
        if not self.prefork or spec.preload is None or argv[:2] != [sys.executable, "-m"]:
            return None
        if not interpreter_env_matches(env):
            return None  # PYTHONPATH & co. act at interpreter start: the parent's are not these
        async with self._prefork_locks[pod.app]:
            parent = self._preforks.get(pod.app)
            if parent is None or not parent.alive:
                parent = PreforkParent(
                    spec.preload(), self.logs_dir / f"prefork-{pod.app}.log", self.run_dir
                )
                try:
                    await parent.start()
                except OSError as exc:
                    log.warning("cannot start the prefork parent of %s: %s", pod.app, exc)
                    return None
                self._preforks[pod.app] = parent
        child = await parent.spawn(argv, env, pod.work_dir, pod.log_path, PREFORK_TIMEOUT_SECONDS)
        if child is not None:
            self.forked_starts += 1
        return child

    async def _probe(self, pod: Pod) -> None:
        """Readiness, from the pod's start. Within the spec's initial delay the path is still
        asked, but only so slot 0 can let the other replicas start once it answers (it has
        migrated the schema, as a cluster's migration Job would have): the pod is not Ready
        before the delay has passed, like the kubelet's `initialDelaySeconds`. The app's spec
        is read at each probe: a profile's new settings apply to the running pods too."""
        while not pod.exited and not pod.stopping:
            spec = self.specs[pod.app]
            readiness = spec.readiness
            try:
                response = await self._http.get(
                    pod.url + spec.ready_path, timeout=readiness.timeout_seconds
                )
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            if pod.stopping or pod.exited:
                break
            if ok and pod.slot == 0 and pod.app not in self.leader_ready:
                self.leader_ready.add(pod.app)
                self.poke()
            delayed = time.time() - pod.started_at < readiness.initial_delay_seconds
            if ok and not delayed:
                pod.failures = 0
                if not pod.ready:
                    pod.ready = True
                    log.info("pod %s ready after %.1f s", pod.name, time.time() - pod.started_at)
                    self.slot_of(pod).crashes_before_ready = 0
                    self.poke()
                    self.on_change()
            elif not ok:
                pod.failures += 1
                if pod.ready and pod.failures >= readiness.failure_threshold:
                    pod.ready = False
                    self.on_change()
            await asyncio.sleep(readiness.period_seconds)

    async def _liveness(self, pod: Pod) -> None:
        """The kubelet's liveness probe (the app spec's, read at each probe; none: not
        probed): from the pod's first readiness on, every `period_seconds`;
        `failure_threshold` failures in a row restart the pod."""
        while not pod.ready and not pod.exited and not pod.stopping:
            await asyncio.sleep(PROBE_PERIOD_SECONDS)
        while not pod.exited and not pod.stopping:
            probe = self.specs[pod.app].liveness
            await asyncio.sleep(probe.period_seconds if probe else PROBE_PERIOD_SECONDS)
            if pod.exited or pod.stopping:
                return
            probe = self.specs[pod.app].liveness
            if probe is None:
                pod.liveness_failures = 0
                continue
            try:
                response = await self._http.get(pod.url + probe.path, timeout=probe.timeout_seconds)
                alive = response.status_code < 400
                detail = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                alive, detail = False, type(exc).__name__
            if alive:
                pod.liveness_failures = 0
                continue
            pod.liveness_failures += 1
            log.info(
                "pod %s liveness probe %s failed (%s), %d of %d",
                pod.name,
                probe.path,
                detail,
                pod.liveness_failures,
                probe.failure_threshold,
            )
            if pod.liveness_failures >= probe.failure_threshold and pod.pid is not None:
                log.warning(
                    "pod %s failed liveness %d times: restarting it",
                    pod.name,
                    pod.liveness_failures,
                )
                pod.liveness_kills += 1
                self.kill([pod])
                return
