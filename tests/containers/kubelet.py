"""Start a rendered pod's containers as local processes, the way a kubelet would, and probe them.

What a kubelet does, and what stands in for it here:

- Image: the container's image is one of ours (images.py): its Python environment is the
  virtualenv built from the image's lock; ENTRYPOINT/CMD/ENV come from its Dockerfile.
- command/args: exactly as rendered (Kubernetes' `command` replaces ENTRYPOINT, `args` CMD),
  `$(VAR)` expanded from the container's env as the kubelet does, argv[0] looked up on the
  container's PATH (the virtualenv's bin first).
- env/envFrom: literal values, ConfigMap and Secret references (the test supplies the Secrets
  the README tells users to create), the downward API fields the manifests use.
- Network: every pod gets its own loopback address 127.A.B.N (all of 127/8 is local on Linux) and
  keeps the ports the manifest gives it, so two pods can both listen on :8089 as in a cluster.
  A pod's `0.0.0.0` (its own network namespace in a cluster) becomes its address in args; a
  process binding a fixed 127.0.0.1 is thus NOT reachable on the pod address, as in a cluster.
- DNS and kube-proxy: a Service name (`mlflow`, `mlflow.helius.svc.cluster.local`, with or
  without a port, in a URL or alone) in env values and args is rewritten to the address of the
  pod the Service selects and the targetPort of the port named (no DNS server or proxy here).
  A bare name is rewritten only where it is a host by position (`*_HOST` env, after a
  `--*-host` flag): `mlflow` the command or the database user stays. A Host-header allow-list
  (`*_HOSTS`) keeps its names and gets their addresses added, since clients here send those.
- Volumes: emptyDir and ConfigMap volumes are temp directories, and their mount paths are
  rewritten in args, env and exec probes; image paths the Dockerfile COPYs from the repository
  (harness: /app/loadtests) point at the working tree. TMPDIR is the /tmp emptyDir when there is
  one. Not enforced: runAsUser (the processes run as the test's user), readOnlyRootFilesystem
  (each container's working directory is a fresh empty directory, the rest of the host is not
  read-only), resource limits, seccomp.
- Probes: httpGet, tcpSocket and exec as rendered, from the test process to the pod address.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from images import IMAGES, Image, image_of, python_env

NAMESPACE = "helius"
ANY_ADDRESS = "0.0.0.0"  # noqa: S104  only replaced: the manifests' bind-all becomes the pod's IP
Obj = dict[str, Any]


def workloads(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet")]


def our_containers(objects: list[Obj]) -> list[tuple[Obj, Obj, bool]]:
    """(workload, container, is_init) for every container whose image this project builds."""
    found = []
    for workload in workloads(objects):
        spec = workload["spec"]["template"]["spec"]
        for init, key in ((True, "initContainers"), (False, "containers")):
            for container in spec.get(key, []):
                if image_of(container["image"]) is not None:
                    found.append((workload, container, init))
    return found


def find(objects: list[Obj], kind: str, name: str) -> Obj:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise KeyError(f"{kind}/{name} is not in the rendered manifests")


def workload_named(objects: list[Obj], name: str) -> Obj:
    for obj in workloads(objects):
        if obj["metadata"]["name"] == name:
            return obj
    raise KeyError(f"no workload {name!r} in the rendered manifests")


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class AddressPool:
    """Pod addresses 127.A.B.N (A, B random per run: two runs on one host rarely collide)."""

    def __init__(self) -> None:
        self.prefix = f"127.{random.randint(100, 250)}.{random.randint(1, 250)}"
        self.next = 10

    def take(self) -> str:
        self.next += 1
        return f"{self.prefix}.{self.next}"


@dataclass
class PodAddress:
    name: str
    ip: str
    labels: dict[str, str]
    ports: dict[str, int]  # named container ports


@dataclass
class Network:
    """Services of the rendered manifests resolved to the pods started so far."""

    services: list[Obj]
    pods: list[PodAddress] = field(default_factory=list)

    def endpoint(self, service: Obj) -> tuple[str, dict[int, int]] | None:
        selector = service["spec"].get("selector", {})
        for pod in self.pods:
            if selects(selector, pod.labels):
                ports = {}
                for port in service["spec"]["ports"]:
                    target = port.get("targetPort", port["port"])
                    ports[int(port["port"])] = (
                        int(target) if str(target).isdigit() else pod.ports[target]
                    )
                return pod.ip, ports
        return None

    def rewrite(self, value: str, bare: bool = False) -> str:
        """Service names -> pod address[:targetPort]: in URLs (`//name`, `@name`), as `name:port`,
        and, where `bare` (a value that is a host by its name: `*_HOST`, the value after a
        `--*-host` flag), alone or in a comma list. `mlflow` the command or the database
        user is not a host."""
        for service in self.services:
            resolved = self.endpoint(service)
            if resolved is None:
                continue
            ip, ports = resolved
            base = service["metadata"]["name"]
            names = [
                f"{base}.{NAMESPACE}.svc.cluster.local",
                f"{base}.{NAMESPACE}.svc",
                f"{base}.{NAMESPACE}",
                base,
            ]
            for name in names:
                pattern = re.compile(
                    r"(?:(?<=//)|(?<=[,@=\s])|^)"
                    + re.escape(name)
                    # not the user of a URI's userinfo (`postgresql://mlflow:pw@host`)
                    + r"(?![^/@\s]*@)(?::(\d+|\*))?(?=$|[:/,?\s])"
                )

                def replace(
                    m: re.Match[str],
                    value: str = value,
                    ip: str = ip,
                    ports: dict[int, int] = ports,
                ) -> str:
                    port = m[1]
                    in_url = value[: m.start()].endswith(("//", "@"))
                    if port is None and not in_url and not bare:
                        return m[0]
                    if port is None:
                        # a URL without a port: the scheme's default (http: 80)
                        if value[: m.start()].endswith("http://") and 80 in ports:
                            return f"{ip}:{ports[80]}"
                        return ip
                    if port == "*":
                        return f"{ip}:*"
                    return f"{ip}:{ports.get(int(port), int(port))}"

                value = pattern.sub(replace, value)
        return value


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined names replaced, undefined left, $$ -> $."""

    def replace(m: re.Match[str]) -> str:
        if m[0] == "$$":
            return "$"
        return env.get(m[1], m[0])

    return _VAR.sub(replace, value)


@dataclass
class Container:
    pod: str
    workload: Obj
    spec: Obj
    image: Image
    ip: str
    env: dict[str, str]
    argv: list[str]
    cwd: Path
    log: Path
    mounts: dict[str, Path]
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"{self.pod}/{self.spec['name']}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 12) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    # -- probes ------------------------------------------------------------------------------

    def port(self, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for declared in self.spec.get("ports", []):
            if declared.get("name") == port:
                return int(declared["containerPort"])
        raise KeyError(f"{self.name}: no container port named {port!r}")

    def probe_once(self, probe: Obj) -> str | None:
        """None when the probe succeeds, else why it failed."""
        timeout = float(probe.get("timeoutSeconds", 1))
        if "httpGet" in probe:
            get = probe["httpGet"]
            url = f"http://{self.ip}:{self.port(get['port'])}{get.get('path', '/')}"
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders", [])}
            request = urllib.request.Request(url, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310  http URL built from the pod's probe and IP
                    code = answer.status
            except urllib.error.HTTPError as exc:
                code = exc.code
            except (OSError, urllib.error.URLError) as exc:
                return f"GET {url}: {getattr(exc, 'reason', exc)}"
            return None if 200 <= code < 400 else f"GET {url}: HTTP {code}"
        if "tcpSocket" in probe:
            port = self.port(probe["tcpSocket"]["port"])
            try:
                with socket.create_connection((self.ip, port), timeout=timeout):
                    return None
            except OSError as exc:
                return f"tcp {self.ip}:{port}: {exc}"
        if "exec" in probe:
            argv = [self.localize(a) for a in probe["exec"]["command"]]
            argv[0] = shutil.which(argv[0], path=self.env["PATH"]) or argv[0]
            try:
                done = subprocess.run(
                    argv, env=self.env, cwd=self.cwd, capture_output=True, timeout=timeout
                )
            except subprocess.TimeoutExpired:
                return f"exec {argv!r}: timed out after {timeout} s"
            if done.returncode == 0:
                return None
            return f"exec {argv!r}: exit {done.returncode} {done.stderr.decode()[-200:]}"
        raise ValueError(f"{self.name}: unknown probe {probe}")

    def localize(self, value: str) -> str:
        return localize_paths(value, self.mounts)


def localize_paths(value: str, mounts: dict[str, Path]) -> str:
    """Mount paths (and image paths) -> their local directories, in one pass (a local directory
    may itself start with a mount path, e.g. /tmp)."""
    if not mounts:
        return value
    alternatives = "|".join(re.escape(m) for m in sorted(mounts, key=len, reverse=True))
    pattern = re.compile(r"(?<![\w/.-])(" + alternatives + r")(?=/|$|['\"\s,])")
    return pattern.sub(lambda m: str(mounts[m[1]]), value)


@dataclass
class ProbeResult:
    kind: str
    budget: float
    passed_after: float | None
    last_error: str | None


def probe_budget(probe: Obj) -> float:
    """initialDelaySeconds + failureThreshold x periodSeconds (Kubernetes defaults 0, 3, 10)."""
    return float(probe.get("initialDelaySeconds", 0)) + float(
        probe.get("failureThreshold", 3)
    ) * float(probe.get("periodSeconds", 10))


def await_probe(container: Container, kind: str, started: float) -> ProbeResult | None:
    """Poll the container's `kind` probe (more often than its period) until it passes, the
    budget from `started` is spent, or the process exits."""
    probe = container.spec.get(kind)
    if probe is None:
        return None
    budget = probe_budget(probe)
    delay = float(probe.get("initialDelaySeconds", 0))
    time.sleep(max(0.0, started + min(delay, 1.0) - time.monotonic()))
    error: str | None = None
    while True:
        error = container.probe_once(probe)
        now = time.monotonic()
        if error is None:
            return ProbeResult(kind, budget, now - started, None)
        code = container.exit_code()
        if code is not None:
            return ProbeResult(kind, budget, None, f"process exited with code {code}; {error}")
        if now - started > budget:
            return ProbeResult(kind, budget, None, error)
        time.sleep(0.5)


def build_container(
    *,
    objects: list[Obj],
    workload: Obj,
    spec: Obj,
    pod_name: str,
    ip: str,
    network: Network,
    secrets: dict[str, dict[str, str]],
    root: Path,
    extra_env: dict[str, str] | None = None,
) -> Container:
    image = image_of(spec["image"])
    assert image is not None, spec["image"]
    config = image.config()
    venv = python_env(image)
    home = root / pod_name / spec["name"]
    home.mkdir(parents=True, exist_ok=True)
    pod_spec = workload["spec"]["template"]["spec"]

    # volumes: emptyDir -> empty dir (one per pod), ConfigMap -> its files
    volumes: dict[str, Path] = {}
    for volume in pod_spec.get("volumes", []):
        path = root / pod_name / "volumes" / volume["name"]
        if not path.exists():
            path.mkdir(parents=True)
            if "configMap" in volume:
                data = find(objects, "ConfigMap", volume["configMap"]["name"]).get("data", {})
                for key, text in data.items():
                    (path / key).write_text(text, encoding="utf-8")
            elif "emptyDir" not in volume:
                raise NotImplementedError(f"{pod_name}: volume {volume}")
        volumes[volume["name"]] = path
    mounts = {m["mountPath"]: volumes[m["name"]] for m in spec.get("volumeMounts", [])}
    mounts |= {k: v for k, v in image.files.items() if k not in mounts}

    env: dict[str, str] = dict(config.env)
    # the image's PATH puts its own virtualenv first; here that virtualenv is the lock's
    env["PATH"] = f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    env["HOSTNAME"] = pod_name
    if image.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in image.pythonpath)
    if "/tmp" in mounts:  # noqa: S108  the container's /tmp mount point, mapped to a private dir
        env["TMPDIR"] = str(mounts["/tmp"])  # noqa: S108  the same mount point's key
    for source in spec.get("envFrom", []):
        if "configMapRef" in source:
            env |= find(objects, "ConfigMap", source["configMapRef"]["name"]).get("data", {})
        elif "secretRef" in source:
            env |= secrets[source["secretRef"]["name"]]
    fields = {"metadata.name": pod_name, "metadata.namespace": NAMESPACE}
    for var in spec.get("env", []):
        if "value" in var:
            env[var["name"]] = expand(str(var["value"]), env)
            continue
        ref = var["valueFrom"]
        if "secretKeyRef" in ref:
            env[var["name"]] = secrets[ref["secretKeyRef"]["name"]][ref["secretKeyRef"]["key"]]
        elif "configMapKeyRef" in ref:
            cm = find(objects, "ConfigMap", ref["configMapKeyRef"]["name"])
            env[var["name"]] = cm["data"][ref["configMapKeyRef"]["key"]]
        elif "fieldRef" in ref:
            env[var["name"]] = fields[ref["fieldRef"]["fieldPath"]]
        else:
            raise NotImplementedError(f"{pod_name}: env {var}")

    command = spec.get("command") or config.entrypoint or []
    args = spec.get("args") if "args" in spec else (None if "command" in spec else config.cmd)
    argv = [expand(str(a), env) for a in [*command, *(args or [])]]
    argv = [
        argv[0],
        *(
            localize_paths(
                network.rewrite(a.replace(ANY_ADDRESS, ip), bare=_is_host_flag(prev)), mounts
            )
            for prev, a in zip(argv, argv[1:], strict=False)
        ),
    ]
    for key, value in env.items():
        if key.endswith("_HOSTS"):
            # a Host-header allow-list (MLFLOW_SERVER_ALLOWED_HOSTS): clients here send the
            # address a Service name was rewritten to, so each name gets its address added
            items = value.split(",")
            added = [a for i in items if (a := network.rewrite(i, bare=True)) != i]
            env[key] = ",".join(items + added)
        elif key not in ("PATH", "PYTHONPATH", "TMPDIR"):
            host = key.endswith("_HOST")
            env[key] = localize_paths(network.rewrite(value, bare=host), mounts)
    env |= extra_env or {}  # the test's own paths (a kubeconfig): not rewritten
    argv[0] = shutil.which(argv[0], path=env["PATH"]) or argv[0]
    cwd = home / "workdir"
    cwd.mkdir(exist_ok=True)
    return Container(
        pod=pod_name,
        workload=workload,
        spec=spec,
        image=image,
        ip=ip,
        env=env,
        argv=argv,
        cwd=cwd,
        log=home / "log.txt",
        mounts=mounts,
    )


def _is_host_flag(arg: str) -> bool:
    return arg.startswith("--") and arg.endswith("-host")


def pod_address(workload: Obj, pod_name: str, ip: str) -> PodAddress:
    template = workload["spec"]["template"]
    ports = {
        p["name"]: int(p["containerPort"])
        for c in template["spec"]["containers"]
        for p in c.get("ports", [])
        if "name" in p
    }
    return PodAddress(pod_name, ip, dict(template["metadata"].get("labels", {})), ports)


__all__ = ["IMAGES", "AddressPool", "Container", "Network", "await_probe", "build_container"]
