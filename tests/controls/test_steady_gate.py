"""The steady gate (chaoshelius.controls.steady_gate) against a real Prometheus.

A live `prometheus` scrapes a tiny exporter every second and evaluates one alert rule every
second; the test flips the exporter's values (an alert condition, a recommender's fallback
gauge) and watches the gate wait, let the fault through, or refuse it: through the control's
functions, and once through the real `chaos` CLI with the report's verdict.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import InterruptExecution
from support.http import reply, serve
from support.prom_fixture import launch_prometheus

from chaoshelius.controls import steady_gate
from chaoshelius.promapi import PrometheusAPI
from chaoshelius.report import Verdict, build_run_report
from chaoshelius.slo.steady import NO_FALLBACK_NOW_PROBE

RULES = """
groups:
  - name: gate-test
    rules:
      - alert: GateTestDegraded
        expr: helius_gate_test_degraded == 1
        labels: {severity: warning}
      - alert: GateTestSlowBurn
        expr: helius_gate_test_slow_burn == 1
        for: 1h
        labels: {severity: warning}
"""
FAULT = {"type": "action", "name": "inject", "provider": {"type": "python", "module": "x"}}
LOAD = {
    "type": "action",
    "name": "start-load",
    "provider": {"type": "python", "module": "chaoshelius.load.actions", "func": "start_load"},
}


class Exporter:
    def __init__(self) -> None:
        self.degraded = 0  # the alert's condition
        self.slow_burn = 0  # a `for: 1h` alert's condition: pending for the whole test
        self.fallback = 0  # one recommender's gauge

    def text(self) -> str:
        return (
            f'helius_gate_test_degraded{{namespace="helius"}} {self.degraded}\n'
            f'helius_gate_test_slow_burn{{namespace="helius"}} {self.slow_burn}\n'
            f'reco_engine_in_fallback_mode{{namespace="helius",pod="reco-a-0"}} {self.fallback}\n'
        )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Exporter, str]]:
    exporter = Exporter()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  http.server's spelling
            reply(self, exporter.text().encode(), "text/plain; version=0.0.4")

        def log_message(self, *args: Any) -> None:
            pass

    server, exporter_url = serve(Handler)
    work = tmp_path_factory.mktemp("gate-prom")
    (work / "rules.yml").write_text(RULES)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(work / "rules.yml")],
        "scrape_configs": [
            {
                "job_name": "exporter",
                "static_configs": [{"targets": [exporter_url.removeprefix("http://")]}],
            }
        ],
    }
    (work / "prometheus.yml").write_text(json.dumps(config))
    prom, url = launch_prometheus(work, work / "prometheus.yml", work / "data")
    try:
        deadline = time.monotonic() + 30  # ready is not scraped: wait for the first sample
        while not PrometheusAPI(url, 2.0).instant("up"):
            assert time.monotonic() < deadline, "prometheus never scraped the exporter"
            time.sleep(0.5)
        yield exporter, url
    finally:
        prom.terminate()
        prom.wait(10)
        server.shutdown()
        server.server_close()


def _until(url: str, reason: str | None, timeout: float = 20.0) -> None:
    """Wait until Prometheus itself sees the state the test set up."""
    prom = PrometheusAPI(url, 2.0)
    deadline = time.monotonic() + timeout
    while steady_gate.unsteady_reason(prom, "helius") != reason:
        assert time.monotonic() < deadline, steady_gate.unsteady_reason(prom, "helius")
        time.sleep(0.3)


def _configure(url: str, run_dir: Path, timeout: float) -> None:
    steady_gate.configure_control(
        timeout_seconds=timeout,
        poll_seconds=0.3,
        configuration={"prometheus_base_url": url, "helius_run_dir": str(run_dir)},
    )
    steady_gate.before_method_control({})


def test_the_gate_waits_for_an_alert_to_clear_then_lets_the_fault_in(
    live: tuple[Exporter, str], tmp_path: Path
) -> None:
    exporter, url = live
    exporter.degraded, exporter.fallback = 1, 0
    _until(url, "alerts firing: ['GateTestDegraded']")
    _configure(url, tmp_path, timeout=40)
    steady_gate.before_activity_control(LOAD)  # the load is not a fault: no wait
    threading.Timer(3.0, lambda: setattr(exporter, "degraded", 0)).start()
    started = time.monotonic()
    steady_gate.before_activity_control(FAULT)
    assert time.monotonic() - started >= 3.0, "the gate let a fault into a stack with an alert"
    assert not (tmp_path / steady_gate.NOT_STEADY_FILE).exists()
    exporter.degraded = 1  # a second fault in the same method is not gated again
    _until(url, "alerts firing: ['GateTestDegraded']")
    steady_gate.before_activity_control(FAULT)
    exporter.degraded = 0


def test_the_gate_refuses_a_fault_while_an_alert_is_pending(
    live: tuple[Exporter, str], tmp_path: Path
) -> None:
    """A pending alert's `for:` clock is already running (e.g. on a restart's own refresh
    failures): a fault now would see it fire sooner than the fault alone makes it, and an
    `alert_fired` probe would credit the fault. Firing alerts are named first."""
    exporter, url = live
    exporter.degraded, exporter.slow_burn, exporter.fallback = 0, 1, 0
    _until(url, "alerts pending: ['GateTestSlowBurn']")
    exporter.degraded = 1
    _until(url, "alerts firing: ['GateTestDegraded']")
    exporter.degraded = 0
    _until(url, "alerts pending: ['GateTestSlowBurn']")
    _configure(url, tmp_path, timeout=2)
    with pytest.raises(InterruptExecution, match="alerts pending"):
        steady_gate.before_activity_control(FAULT)
    exporter.slow_burn = 0
    _until(url, None)


def test_the_gate_refuses_a_fault_while_a_recommender_reports_fallback(
    live: tuple[Exporter, str], tmp_path: Path
) -> None:
    exporter, url = live
    exporter.degraded, exporter.fallback = 0, 1
    _until(url, "1 recommender(s) reporting fallback")
    _configure(url, tmp_path, timeout=2)
    steady_gate.before_activity_control(FAULT, experiment={"dry": "probes"})  # never judged
    assert not (tmp_path / steady_gate.NOT_STEADY_FILE).exists()
    with pytest.raises(InterruptExecution, match="reporting fallback"):
        steady_gate.before_activity_control(FAULT)
    refused = json.loads((tmp_path / steady_gate.NOT_STEADY_FILE).read_text())
    assert refused["waited_seconds"] >= 2 and "'inject' was due" in refused["reason"]
    exporter.fallback = 0
    _until(url, None)
    steady_gate.before_method_control({})
    steady_gate.after_method_control({})
    steady_gate.before_activity_control(FAULT)  # rollbacks (after the method) are not gated


def test_a_refused_fault_is_not_judged_through_the_chaos_cli(
    live: tuple[Exporter, str], tmp_path: Path
) -> None:
    exporter, url = live
    exporter.degraded, exporter.fallback = 1, 0
    _until(url, "alerts firing: ['GateTestDegraded']")
    run_dir = tmp_path / "run"
    (tmp_path / "gated.json").write_text(
        json.dumps(_tiny_experiment(url, run_dir, tmp_path / "injected"))
    )
    _chaos_run(tmp_path, "gated.json")
    exporter.degraded = 0
    assert not (tmp_path / "injected").exists(), "the fault was injected into an unsteady stack"
    summary = build_run_report(run_dir, offline=True).summary
    assert summary.verdict is Verdict.NOT_JUDGED, summary.reason
    assert "No fault was injected" in summary.reason and "GateTestDegraded" in summary.reason
    assert not summary.as_expected


@pytest.mark.parametrize("fallback", [0, 1])
def test_a_tolerance_missed_before_the_method_is_not_judged_and_exits_1(
    live: tuple[Exporter, str], tmp_path: Path, fallback: int
) -> None:
    """chaostoolkit-prometheus's instant query with a jsonpath tolerance in the hypothesis:
    out of tolerance before the method, plain `chaos run` would skip the method and exit 0;
    with the gate declared it exits 1, injects nothing and the report says why."""
    exporter, url = live
    exporter.degraded, exporter.fallback = 0, fallback
    _until(url, "1 recommender(s) reporting fallback" if fallback else None)
    run_dir = tmp_path / "run"
    experiment = _tiny_experiment(url, run_dir, tmp_path / "injected")
    experiment["steady-state-hypothesis"] = {"title": "calm", "probes": [NO_FALLBACK_NOW_PROBE]}
    (tmp_path / "hypothesis.json").write_text(json.dumps(experiment))
    done = _chaos_run(tmp_path, "hypothesis.json")
    exporter.fallback = 0
    summary = build_run_report(run_dir, offline=True).summary
    if not fallback:
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "injected").exists()
        assert summary.verdict is Verdict.PASSED, summary.reason
        return
    assert done.returncode == 1, "a missed tolerance before the method must fail the CLI"
    assert not (tmp_path / "injected").exists(), "the method ran on an unsteady stack"
    assert summary.verdict is Verdict.NOT_JUDGED, summary.reason
    assert "recommender-not-in-fallback-now" in summary.reason, summary.reason
    assert '"1"' in summary.reason, summary.reason  # what the probe returned


def _tiny_experiment(url: str, run_dir: Path, marker: Path) -> dict[str, Any]:
    (marker.parent / "tinyfault.py").write_text(
        "import pathlib\n"
        "def inject(path: str) -> None:\n"
        "    pathlib.Path(path).write_text('injected')\n"
    )
    return {
        "version": "1.0.0",
        "title": "tiny",
        "description": "one harmless action behind the gate",
        "configuration": {"prometheus_base_url": url, "helius_run_dir": str(run_dir)},
        "runtime": {"rollbacks": {"strategy": "always"}},
        "controls": [
            {
                "name": "helius-steady-gate",
                "provider": {
                    "type": "python",
                    "module": steady_gate.MODULE,
                    "arguments": {"timeout_seconds": 2, "poll_seconds": 0.3},
                },
            },
            {
                "name": "helius-journal",
                "provider": {"type": "python", "module": "chaoshelius.controls.journal"},
            },
        ],
        "steady-state-hypothesis": {"title": "nothing", "probes": []},
        "method": [
            {
                "type": "action",
                "name": "inject",
                "provider": {
                    "type": "python",
                    "module": "tinyfault",
                    "func": "inject",
                    "arguments": {"path": str(marker)},
                },
            }
        ],
    }


def _chaos_run(work: Path, name: str) -> subprocess.CompletedProcess[str]:
    bin_dir = Path(sys.executable).parent
    return subprocess.run(
        [str(bin_dir / "chaos"), "--log-file", str(work / "chaos.log"), "run", name],
        cwd=work,
        env={"PATH": str(bin_dir), "PYTHONPATH": str(work), "HOME": str(work)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
