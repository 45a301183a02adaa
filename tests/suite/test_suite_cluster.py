"""`chaoshelius suite run` on target=kubernetes: a cluster campaign's reports.

The end-to-end test runs the real `chaoshelius suite run` (and through it the real `chaos`
CLI, the real report builder and a real Prometheus) against the fake API server serving the
kind overlay, with the simulated pods' series of test_kubernetes_verdicts (no kube-apiserver,
kubelet or container can run here: see tests/support/k8s_fake_api.py and
k8s_fake_metrics.py; MLflow's REST API is mlflow_stub). It proves the suite brings no local
stack up, takes the Prometheus URL from the configuration, waits for a steady cluster, and
writes one run directory per experiment, the index and JUnit with the verdicts.

The other tests check the suite's refusals with no cluster at all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from chaoshelius.cli import main
from chaoshelius.suite import PlannedRun, SuiteError, SuiteOptions, chaos_run_args, suite_target

ROOT = Path(__file__).resolve().parents[2]


def _verdicts_module() -> Any:
    """tests/experiments/test_kubernetes_verdicts.py (its simulated cluster's settings), also
    when this file runs without that directory collected (`pytest tests/suite`)."""
    import importlib.util

    name = "test_kubernetes_verdicts"
    if name in sys.modules:
        return sys.modules[name]
    path = ROOT / "tests" / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


EXPERIMENTS = ROOT / "experiments"
CLUSTER_PROFILE = EXPERIMENTS / "profiles" / "cluster.json"

# one short experiment end to end (the index over several runs is the local suite's tests'
# subject; the interrupted campaign below runs the zone drain): CI time is tight
CAMPAIGN = ("mlflow-pod-kill",)


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["suite", "run", "--experiments", str(EXPERIMENTS), *args])
    return result.exit_code, result.output


def _one_error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    return errors[0]


def test_negative_controls_are_refused_on_a_cluster_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HELIUS_PROMETHEUS_URL", "http://prometheus.example:9090")
    for args in (
        ("--target", "kubernetes"),
        ("--var", "target=kubernetes"),
    ):
        code, output = _invoke(
            *args, "--negative", "--only", "mlflow-outage", "--reports", str(tmp_path)
        )
        assert code == 1, output
        error = _one_error_line(output)
        assert "--negative runs on the local stack only" in error
        assert "service variants" in error
    assert not (tmp_path / "runs").exists()


def test_lanes_are_refused_on_a_cluster_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A cluster is one system: two lanes would run two faults on it at once."""
    monkeypatch.setenv("HELIUS_PROMETHEUS_URL", "http://prometheus.example:9090")
    code, output = _invoke(
        "--target", "kubernetes", "--lanes", "2", "--only", "mlflow-outage",
        "--only", "az-drain", "--reports", str(tmp_path),
    )  # fmt: skip
    assert code == 1, output
    assert "--lanes runs on the local stack only" in _one_error_line(output)
    assert not (tmp_path / "runs").exists()


def test_a_context_outside_the_allow_list_stops_the_suite_before_any_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from support.k8s_fake_api import isolate_client, write_kubeconfig

    kubeconfig = write_kubeconfig(
        tmp_path / "kubeconfig", {"prod": "https://prod.example:6443"}, "prod"
    )
    isolate_client(monkeypatch, kubeconfig)
    monkeypatch.setenv("HELIUS_PROMETHEUS_URL", "http://prometheus.example:9090")
    for name in ("HELIUS_KUBE_CONTEXT", "HELIUS_KUBE_ALLOWED_CONTEXTS", "KUBERNETES_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    reports = tmp_path / "reports"
    code, output = _invoke(
        "--target", "kubernetes", "--only", "mlflow-pod-kill", "--reports", str(reports)
    )
    assert code == 1, output
    line = _one_error_line(output)
    assert line.startswith("Error: target=kubernetes: kube context 'prod' is not in")
    assert not reports.exists()  # nothing ran, nothing was written


def test_a_cluster_suite_needs_a_prometheus_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HELIUS_PROMETHEUS_URL", raising=False)
    runs = [PlannedRun(EXPERIMENTS / "mlflow-pod-kill.json")]
    with pytest.raises(SuiteError, match="--var prometheus_base_url="):
        suite_target(runs, SuiteOptions(target="kubernetes"))
    # from --var, from a var file, or from the environment
    url = "http://prom.example:9090"
    by_var = chaos_run_args(var=[f"prometheus_base_url={url}"])
    target, resolved = suite_target(runs, SuiteOptions(target="kubernetes", chaos_args=by_var))
    assert (target, resolved.prometheus_url) == ("kubernetes", url)
    monkeypatch.setenv("HELIUS_PROMETHEUS_URL", url)
    _, resolved = suite_target(runs, SuiteOptions(target="kubernetes"))
    assert resolved.prometheus_url == url


def test_the_target_comes_from_the_option_or_the_configuration(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("HELIUS_TARGET", raising=False)
    monkeypatch.setenv("HELIUS_PROMETHEUS_URL", "http://prom.example:9090")
    runs = [PlannedRun(EXPERIMENTS / "mlflow-pod-kill.json")]
    assert suite_target(runs, SuiteOptions())[0] == "local"
    var_file = tmp_path / "cluster.json"
    var_file.write_text(json.dumps({"configuration": {"target": "kubernetes"}}))
    from_file = chaos_run_args(var_file=[var_file])
    assert suite_target(runs, SuiteOptions(chaos_args=from_file))[0] == "kubernetes"
    monkeypatch.setenv("HELIUS_TARGET", "kubernetes")
    assert suite_target(runs, SuiteOptions())[0] == "kubernetes"
    with pytest.raises(SuiteError, match="--target local but the runs' configuration says"):
        suite_target(runs, SuiteOptions(target="local", chaos_args=from_file))


@dataclass
class FakeCluster:
    """The fake API server, the simulated pods and a real Prometheus scraping them."""

    api: Any  # k8s_fake_api.FakeKubeAPI
    env: dict[str, str]  # for `chaoshelius suite run`: kubeconfig, allow-lists, MLflow, rate
    prometheus_url: str
    var_file: Path  # cluster.json's keys with the simulated cluster's short timings

    def suite_argv(self, reports: Path, *args: str) -> list[str]:
        return [
            str(Path(sys.executable).with_name("chaoshelius")),
            "suite", "run", "--experiments", str(EXPERIMENTS),
            "--var-file", str(self.var_file),
            "--var", "target=kubernetes",
            "--var", f"prometheus_base_url={self.prometheus_url}",
            "--reports", str(reports),
            *args,
        ]  # fmt: skip


@contextmanager
def fake_cluster(tmp_path: Path) -> Iterator[FakeCluster]:
    from support.k8s_fake_api import FakeKubeAPI, serve, write_kubeconfig
    from support.k8s_fake_metrics import SimulatedSystem, scraped
    from support.mlflow_stub import serve_registry

    verdicts = _verdicts_module()
    COLD_START_SECONDS, CONTEXT, READY_SECONDS, TIMING = (  # noqa: N806
        verdicts.COLD_START_SECONDS, verdicts.CONTEXT, verdicts.READY_SECONDS, verdicts.TIMING
    )  # fmt: skip

    # the cluster profile, as a user passes it, with test_kubernetes_verdicts' short timings
    # (the simulated cluster scrapes every second); keys without one keep the experiments'
    profile = json.loads(CLUSTER_PROFILE.read_text())["configuration"]
    var_file = tmp_path / "cluster-fast.json"
    var_file.write_text(
        json.dumps({"configuration": {k: TIMING[k] for k in profile if k in TIMING}})
    )
    cluster = FakeKubeAPI.from_overlay(grace_seconds=0.2, ready_seconds=READY_SECONDS)
    cluster.ready_seconds_by_app = dict(COLD_START_SECONDS)
    server, api_url = serve(cluster)
    try:
        with (
            serve_registry() as (registry, mlflow_url),
            SimulatedSystem(cluster, registry, tmp_path / "targets.json").serve() as system,
            scraped(tmp_path, system) as prometheus_url,
        ):
            kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {CONTEXT: api_url}, CONTEXT)
            env = {
                **os.environ,
                "KUBECONFIG": str(kubeconfig),
                "HELIUS_KUBE_CONTEXT": CONTEXT,
                "HELIUS_KUBE_ALLOWED_CONTEXTS": CONTEXT,
                "HELIUS_KUBE_ALLOWED_SERVERS": f"{CONTEXT}={api_url}",
                "HELIUS_MLFLOW_URL": mlflow_url,
                "HELIUS_LOAD_RATE": "100",
            }
            for name in (
                "HELIUS_TARGET",
                "HELIUS_PROMETHEUS_URL",
                "KUBERNETES_CONTEXT",
                "KUBERNETES_HOST",
                "CHAOSTOOLKIT_IN_POD",
            ):
                env.pop(name, None)
            yield FakeCluster(cluster, env, prometheus_url, var_file)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.integration
@pytest.mark.slow
def test_a_cluster_campaign_writes_run_dirs_index_and_junit(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    state_dir = tmp_path / "stack-state"
    started = time.monotonic()
    with fake_cluster(tmp_path) as cluster:
        only = [arg for name in CAMPAIGN for arg in ("--only", name)]
        done = subprocess.run(  # noqa: S603  argv list: our own CLI
            cluster.suite_argv(reports, *only, "--state-dir", str(state_dir)),
            env=cluster.env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )
    seconds = time.monotonic() - started
    output = done.stdout + done.stderr
    print(f"\ncluster campaign of {len(CAMPAIGN)} experiments in {seconds:.0f} s\n{output}")
    assert done.returncode == 0, output
    assert "-- target kubernetes" in output and "prediction check" in output
    assert not state_dir.exists(), "the suite must not bring the local stack up on a cluster"

    run_dirs = sorted(p for p in (reports / "runs").iterdir() if p.is_dir())
    assert [d.name.split("-", 2)[2] for d in run_dirs] == sorted(CAMPAIGN)
    for run_dir in run_dirs:
        summary = json.loads((run_dir / "summary.json").read_text())
        journal = json.loads((run_dir / "journal.json").read_text())
        assert summary["verdict"] == "passed", (run_dir.name, summary["reason"])
        assert journal["status"] == "completed" and not journal["deviated"]
        assert (run_dir / "report.html").is_file() and (run_dir / "meta.json").is_file()
        # the run's fault windows and load were written where the suite said (HELIUS_RUN_DIR),
        # not to the experiments' default reports/runs/latest
        assert (run_dir / "windows.json").is_file() and (run_dir / "load.json").is_file()
    assert not (tmp_path / "reports" / "runs" / "latest").exists()

    index = (reports / "index.html").read_text()
    for name in CAMPAIGN:
        assert name in index
    suites = ET.parse(reports / "junit.xml").getroot()  # noqa: S314  JUnit XML this test's own run wrote
    cases = {str(c.get("name")): c for c in suites.iter("testcase")}
    assert sorted(cases) == sorted(CAMPAIGN)
    for name, case in cases.items():
        assert case.find("failure") is None and case.find("error") is None, name
        assert "verdict passed, expected passed" in (case.findtext("system-out") or ""), name


class _Prometheus:
    """Answers the two queries the steady wait asks (the real Prometheus path is exercised by
    the campaign test above): out-of-fallback count and firing alerts."""

    def __init__(self, out_of_fallback: float, firing: tuple[str, ...] = ()) -> None:
        self.out_of_fallback = out_of_fallback
        self.firing = firing

    def instant_value(self, query: str) -> float | None:
        if "== 0" in query:
            return self.out_of_fallback
        return 0.0  # in fallback (== 1)

    def instant(self, query: str) -> list[Any]:
        from chaoshelius.promapi import Sample

        assert query.startswith("ALERTS"), query
        return [Sample({"alertname": name}, 1.0) for name in self.firing]


def test_the_cluster_steady_wait_names_what_is_not_steady(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the fake API server (no real cluster can run here): every reason the suite
    waits for on a cluster, and steady when none holds."""
    from support.k8s_fake_api import FakeKubeAPI, isolate_client, serve, write_kubeconfig

    from chaoshelius.config import HarnessConfig
    from chaoshelius.drivers import get_driver
    from chaoshelius.suite.cluster import cluster_unsteady_reason

    cluster = FakeKubeAPI.from_overlay(grace_seconds=0.1, ready_seconds=0.0)
    server, url = serve(cluster)
    try:
        isolate_client(
            monkeypatch, write_kubeconfig(tmp_path / "kc", {"kind-helius": url}, "kind-helius")
        )
        config = HarnessConfig.from_chaos(
            {
                "target": "kubernetes",
                "kube_context": "kind-helius",
                "kube_allowed_contexts": "kind-helius",
                "kube_allowed_servers": f"kind-helius={url}",
            }
        )
        driver = get_driver(config)
        reco = [p.name for p in driver.list_pods("helius-reco")]
        assert len(reco) == 3

        def why(prom: _Prometheus, alerts: bool = True) -> str | None:
            return cluster_unsteady_reason(driver, prom, "helius", alerts)  # type: ignore[arg-type]

        assert why(_Prometheus(3)) is None
        assert why(_Prometheus(2)) == "2 of 3 recommenders seen out of fallback by Prometheus"
        assert why(_Prometheus(3, ("MLflowDegraded",))) == "alerts firing: ['MLflowDegraded']"
        assert why(_Prometheus(3, ("MLflowDegraded",)), alerts=False) is None  # the gate's job
        cluster.policies[("helius", "helius-chaos-mlflow-rds")] = {
            "metadata": {
                "name": "helius-chaos-mlflow-rds",
                "namespace": "helius",
                "labels": {"helius.chaos/fault": "true", "helius.chaos/edge": "mlflow-rds"},
            },
            "spec": {},
        }
        assert why(_Prometheus(3)) == "faults still active: ['helius-chaos-mlflow-rds']"
        cluster.set_ready("helius", reco[0], False)
        assert why(_Prometheus(3)) == f"pods not ready: ['{reco[0]}']"
    finally:
        server.shutdown()
        server.server_close()
    reason = why(_Prometheus(3))
    assert reason is not None and reason.startswith("the cluster did not answer (TargetError")


def _cordoned(api: Any) -> list[str]:
    with api.lock:
        return sorted(n for n, node in api.nodes.items() if node["spec"].get("unschedulable"))


@pytest.mark.integration
@pytest.mark.slow
def test_an_interrupted_cluster_campaign_rolls_back_and_still_reports(tmp_path: Path) -> None:
    """Ctrl-C while az-drain holds its zone cordoned: the suite forwards it, the experiment's
    rollback uncordons the nodes on the (fake) cluster, the run is reported interrupted, the
    index and JUnit are written, and the suite exits 130."""
    reports = tmp_path / "reports"
    with fake_cluster(tmp_path) as cluster:
        suite = subprocess.Popen(  # noqa: S603  argv list: our own CLI
            cluster.suite_argv(reports, "--only", "az-drain"),
            env=cluster.env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while not _cordoned(cluster.api) and suite.poll() is None:
                assert time.monotonic() < deadline, "az-drain never cordoned a node"
                time.sleep(0.2)
            assert suite.poll() is None, "the suite ended before the drain"
            suite.send_signal(signal.SIGINT)
            out, _ = suite.communicate(timeout=150)
        finally:
            if suite.poll() is None:
                suite.kill()
                suite.wait()
        text = out.decode(errors="replace")
        assert suite.returncode == 130, text
        assert _cordoned(cluster.api) == [], "the drain outlived the interrupted suite"
    (run_dir,) = list((reports / "runs").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["verdict"] == "interrupted", summary
    assert (run_dir / "report.html").is_file()
    assert (reports / "index.html").is_file() and (reports / "junit.xml").is_file()
    assert "interrupted" in text
