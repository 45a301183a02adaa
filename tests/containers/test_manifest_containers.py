"""Every container whose image this project builds, started here from the rendered kind overlay
the way a kubelet would, and checked the way the cluster checks it.

Rendered with `kubectl kustomize manifests/overlays/kind`. Our images (images.py): the
recommender Deployment and the model-bootstrap Job (helius-reco-service), the MLflow Deployment
with its db-migrate init container (mlflow-server), the load generator's master and two workers
and the chaos reaper (helius-harness). Each runs in a virtualenv built from ONE lock per image,
the file its Dockerfile installs; how a pod is materialised (addresses, Service names, volumes,
env) and what is not enforced is in kubelet.py.

Stand-ins for upstream images and the platform:
- PostgreSQL (the kind overlay's `postgres` Service; RDS on aws): a real PostgreSQL 15 from the
  Debian binaries, chaoshelius.stack.postgres.PostgresServer (it runs the server as an
  unprivileged user when we are root, as CI is), on the postgres pod's address and port 5432,
  with the role and database of the Secret `mlflow-db-creds` the README tells users to create.
- MinIO (S3): no MinIO binary here; moto's S3 server (`moto[server]`, PyPI) on the minio pod's
  address and port 9000, the bucket created as the `minio-bucket` Job does. Chosen over MLflow's
  local artifact root so that MLflow runs with exactly its rendered `--artifacts-destination`
  (s3://...) and S3 endpoint, and the bootstrap Job's upload really goes through to S3.
- Kubernetes API (the reaper's): tests/support/k8s_fake_api.py, served over HTTP; the pod's
  ServiceAccount token mount is stood in by a kubeconfig (KUBECONFIG) pointing at it.
- Prometheus, Grafana: not started; the test scrapes what Prometheus would (pods annotated
  `prometheus.io/scrape`, their port and path; the kind overlay has no PodMonitor) and parses
  it with prometheus_client's parser.
Replicas: one pod per Deployment (two load workers, as start_load's default), not three.

Checks: init containers and Jobs exit 0; startup, readiness and liveness probes (as rendered)
pass within initialDelaySeconds + failureThreshold x periodSeconds; every scraped port serves
Prometheus text, and together they serve every series the alert/recording rules and the
harness's probe contract (chaoshelius.topology) read; no process exits in the stay-up window.
"""

from __future__ import annotations

import re
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from images import IMAGES, REPO, python_env, standin_env
from kubelet import (
    AddressPool,
    Container,
    Network,
    ProbeResult,
    await_probe,
    build_container,
    find,
    our_containers,
    pod_address,
    workload_named,
)
from prometheus_client.parser import text_string_to_metric_families
from rules import expected_series
from support.k8s_fake_api import FakeKubeAPI, serve, write_kubeconfig  # noqa: E402

from chaoshelius.stack.postgres import PostgresServer  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

KIND = REPO / "manifests" / "overlays" / "kind"
STAY_UP_SECONDS = 20.0
JOB_SECONDS = 150.0
S3_REQUIREMENTS = ["moto[server]==5.2.6"]


def render() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("`kubectl` is not on PATH; tests/containers renders the kind overlay with it")
    done = subprocess.run(
        [kubectl, "kustomize", str(KIND)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {KIND} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@dataclass
class Run:
    objects: list[dict[str, Any]]
    containers: list[Container] = field(default_factory=list)
    completed: dict[str, str | None] = field(default_factory=dict)  # init/job -> error
    probes: dict[str, list[ProbeResult]] = field(default_factory=dict)
    exits: dict[str, str] = field(default_factory=dict)  # died in the stay-up window
    liveness_failures: dict[str, str] = field(default_factory=dict)
    # target -> {sample or family name: sum of its values} | error
    scrapes: dict[str, dict[str, float] | str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _wait_port(host: str, port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _run_to_completion(container: Container, backoff_limit: int, seconds: float) -> str | None:
    """A Job's or init container's run: restarted on failure (restartPolicy OnFailure) with
    the kubelet's doubling back-off (10 s, 20 s, ...) up to `backoff_limit` retries."""
    deadline = time.monotonic() + seconds
    delay = 10.0
    for attempt in range(backoff_limit + 1):
        container.start()
        assert container.process is not None
        try:
            code = container.process.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            container.stop()
            return f"still running after {seconds:.0f} s (attempt {attempt + 1})"
        if code == 0:
            return None
        if time.monotonic() + delay > deadline or attempt == backoff_limit:
            return f"exit code {code} (attempt {attempt + 1}):\n{container.log_tail()}"
        time.sleep(delay)
        delay = min(delay * 2, 60.0)
    return "unreachable"


def _probe_sequence(container: Container) -> list[ProbeResult]:
    """startupProbe, then readiness and liveness from the moment startup passed."""
    started = time.monotonic()
    results = []
    startup = await_probe(container, "startupProbe", started)
    if startup is not None:
        results.append(startup)
        if startup.passed_after is None:
            return results
        started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(await_probe, container, k, started) for k in ("readinessProbe",)]
        futures.append(pool.submit(await_probe, container, "livenessProbe", started))
        results += [r for f in futures if (r := f.result()) is not None]
    return results


def _scrape(url: str) -> dict[str, float] | str:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310  http URL of a pod this test started
            text = answer.read().decode()
    except (OSError, urllib.error.URLError) as exc:
        return f"GET {url}: {getattr(exc, 'reason', exc)}"
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        return f"GET {url}: not Prometheus text: {exc}"
    totals: dict[str, float] = {f.name: 0.0 for f in families}
    for family in families:
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals or f"GET {url}: no series"


def _stay_up(run: Run, long_running: list[Container]) -> None:
    """Watch every long-running container for STAY_UP_SECONDS: no exit, and no liveness probe
    failing failureThreshold times in a row (checked every min(periodSeconds, 5) s)."""
    next_check = {c.name: 0.0 for c in long_running}
    failures = {c.name: 0 for c in long_running}
    end = time.monotonic() + STAY_UP_SECONDS
    while time.monotonic() < end:
        now = time.monotonic()
        for c in long_running:
            if c.name in run.exits:
                continue
            code = c.exit_code()
            if code is not None:
                run.exits[c.name] = f"exited with code {code}:\n{c.log_tail()}"
                continue
            probe = c.spec.get("livenessProbe")
            if probe is None or now < next_check[c.name]:
                continue
            next_check[c.name] = now + min(float(probe.get("periodSeconds", 10)), 5.0)
            error = c.probe_once(probe)
            failures[c.name] = 0 if error is None else failures[c.name] + 1
            if failures[c.name] >= int(probe.get("failureThreshold", 3)):
                run.liveness_failures[c.name] = str(error)
        time.sleep(0.5)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    t0 = time.monotonic()
    root = tmp_path_factory.mktemp("kubelet")
    objects = render()
    result = Run(objects)
    for image in IMAGES.values():
        python_env(image)
    s3_env = standin_env("s3", S3_REQUIREMENTS)
    result.timings["environments"] = time.monotonic() - t0

    services = [o for o in objects if o["kind"] == "Service"]
    network = Network(services)
    pool = AddressPool()
    secrets_ = {
        "mlflow-db-creds": {"DB_USER": "mlflow", "DB_PASS": secrets.token_hex(16)},
        "minio-creds": {"MINIO_ROOT_USER": "helius", "MINIO_ROOT_PASSWORD": secrets.token_hex(16)},
    }
    endpoints = find(objects, "ConfigMap", next(
        o["metadata"]["name"] for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("helius-endpoints")
    ))["data"]  # fmt: skip

    # -- stand-ins: PostgreSQL and S3 on the addresses of the pods they replace
    postgres_ip = pool.take()
    network.pods.append(pod_address(workload_named(objects, "postgres"), "postgres-0", postgres_ip))
    postgres = PostgresServer(root / "postgres" / "data", 5432, host=postgres_ip)
    s3_ip = pool.take()
    network.pods.append(pod_address(workload_named(objects, "minio"), "minio-0", s3_ip))
    with (root / "s3.log").open("wb") as s3_log:
        s3 = subprocess.Popen(
            [str(s3_env / "bin" / "moto_server"), "-H", s3_ip, "-p", "9000"],
            stdout=s3_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = FakeKubeAPI()
    api_server, api_url = serve(api)
    kubeconfig = write_kubeconfig(root / "kubeconfig", {"helius": api_url}, "helius")

    started: list[Container] = []
    try:
        postgres.start()
        creds = secrets_["mlflow-db-creds"]
        conn = postgres.connect("postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE ROLE {creds['DB_USER']} LOGIN PASSWORD %s", (creds["DB_PASS"],))
            cur.execute(f"CREATE DATABASE {endpoints['MLFLOW_DB_NAME']} OWNER {creds['DB_USER']}")
        conn.close()
        _wait_port(s3_ip, 9000, 30)
        bucket = re.match(r"s3://([^/]+)", endpoints["ARTIFACTS_DESTINATION"])
        assert bucket is not None
        urllib.request.urlopen(
            urllib.request.Request(f"http://{s3_ip}:9000/{bucket[1]}", method="PUT"), timeout=10
        ).close()
        result.timings["stand-ins"] = time.monotonic() - t0

        # -- our pods: addresses first (Services resolve to them), then the containers
        pods: dict[str, tuple[dict[str, Any], str]] = {}
        for workload, _container, _init in our_containers(objects):
            name = workload["metadata"]["name"]
            copies = 2 if name == "loadgen-worker" else 1
            for i in range(copies):
                pod = f"{name}-{i}"
                if pod not in pods:
                    pods[pod] = (workload, pool.take())
                    network.pods.append(pod_address(workload, pod, pods[pod][1]))

        def make(pod: str, spec: dict[str, Any]) -> Container:
            workload, ip = pods[pod]
            extra = {"KUBECONFIG": str(kubeconfig)} if "reaper" in pod else None
            return build_container(
                objects=objects, workload=workload, spec=spec, pod_name=pod, ip=ip,
                network=network, secrets=secrets_, root=root, extra_env=extra,
            )  # fmt: skip

        long_running: list[Container] = []
        jobs: list[Container] = []
        for pod, (workload, _ip) in pods.items():
            spec = workload["spec"]["template"]["spec"]
            init_error = None
            for init in spec.get("initContainers", []):
                c = make(pod, init)
                started.append(c)
                init_error = _run_to_completion(c, 0, 120)
                result.completed[c.name] = init_error
                if init_error is not None:
                    break
            if init_error is not None:
                continue
            for spec_c in spec["containers"]:
                c = make(pod, spec_c)
                (jobs if workload["kind"] == "Job" else long_running).append(c)
        result.timings["init containers"] = time.monotonic() - t0
        for c in long_running:
            c.start()
            started.append(c)
        result.containers = long_running + jobs
        with ThreadPoolExecutor(len(long_running) + len(jobs)) as executor:
            probe_futures = {c.name: executor.submit(_probe_sequence, c) for c in long_running}
            job_futures = {}
            for job in jobs:
                started.append(job)
                backoff = int(job.workload["spec"].get("backoffLimit", 6))
                job_futures[job.name] = executor.submit(
                    _run_to_completion, job, backoff, JOB_SECONDS
                )
            for name, future in probe_futures.items():
                result.probes[name] = future.result()
            result.timings["probes"] = time.monotonic() - t0
            _stay_up(result, long_running)
            for name, future in job_futures.items():
                result.completed[name] = future.result()
        result.timings["stay up + jobs"] = time.monotonic() - t0

        # -- what Prometheus scrapes
        for c in long_running:
            annotations = c.workload["spec"]["template"]["metadata"].get("annotations", {})
            if annotations.get("prometheus.io/scrape") != "true":
                continue
            port = annotations.get("prometheus.io/port", "80")
            path = annotations.get("prometheus.io/path", "/metrics")
            url = f"http://{c.ip}:{port}{path}"
            result.scrapes[f"{c.pod} {url}"] = _scrape(url)
        result.timings["total"] = time.monotonic() - t0
        yield result
    finally:
        for c in reversed(started):
            c.stop()
        s3.terminate()
        s3.wait(10)
        api_server.shutdown()
        api_server.server_close()
        postgres.stop()
        timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
        print(f"\ncontainer test timings (cumulative): {timings}")


def _describe(run: Run) -> str:
    return "\n".join(f"  {c.name}: {' '.join(c.argv)}\n  log: {c.log}" for c in run.containers)


def test_every_container_of_ours_is_run(run: Run) -> None:
    """The test covers what the brief names: reco + bootstrap, MLflow + db-migrate, the load
    master and workers, the reaper."""
    names = {c.spec["name"] + "@" + c.pod.rsplit("-", 1)[0] for c in run.containers}
    names |= {n.split("/")[1] + "@" + n.split("/")[0].rsplit("-", 1)[0] for n in run.completed}
    for expected in (
        "helius-reco@helius-reco",
        "train@model-bootstrap",
        "mlflow@mlflow",
        "db-migrate@mlflow",
        "locust@loadgen-master",
        "locust@loadgen-worker",
        "reaper@helius-chaos-reaper",
    ):
        assert expected in names, f"{expected} was not started; started: {sorted(names)}"


def test_init_containers_and_jobs_complete(run: Run) -> None:
    failed = {name: error for name, error in run.completed.items() if error is not None}
    assert not failed, "did not complete:\n" + "\n".join(f"{k}: {v}" for k, v in failed.items())


def test_probes_pass_within_their_budgets(run: Run) -> None:
    failed = []
    for name, results in run.probes.items():
        container = next(c for c in run.containers if c.name == name)
        for r in results:
            if r.passed_after is None:
                failed.append(
                    f"{name} {r.kind} did not pass within {r.budget:.0f} s: {r.last_error}\n"
                    f"{container.log_tail()}"
                )
    assert not failed, "\n".join(failed)


def test_scraped_ports_serve_the_series_rules_and_probes_read(run: Run) -> None:
    errors = [
        f"{target}: {names}" for target, names in run.scrapes.items() if isinstance(names, str)
    ]
    served: set[str] = set()
    for names in run.scrapes.values():
        if not isinstance(names, str):
            served |= set(names)
    missing = sorted(expected_series() - served)
    assert not errors and not missing, (
        "scrape targets failing:\n  " + "\n  ".join(errors) + "\nseries the rules/probes read "
        f"that no scraped port serves: {missing}\nscraped: {sorted(run.scrapes)}"
    )


def test_containers_stay_up(run: Run) -> None:
    bad = [f"{k}: {v}" for k, v in run.exits.items()]
    bad += [f"{k}: liveness failed: {v}" for k, v in run.liveness_failures.items()]
    assert not bad, "\n".join(bad)


def test_each_load_worker_exports_the_requests_it_made(run: Run) -> None:
    """Distributed Locust: every worker pod counts its own requests (so sum() over the pods is
    the load); the master, not scraped, exports nothing."""
    workers = {t: v for t, v in run.scrapes.items() if t.startswith("loadgen-worker")}
    assert len(workers) == 2, f"scraped load workers: {sorted(workers)}"
    for target, totals in workers.items():
        assert not isinstance(totals, str), totals
        sent = totals.get("helius_client_requests_total", 0.0)
        assert sent > 0, f"{target}: helius_client_requests_total is {sent} after the run"
