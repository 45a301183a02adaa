"""The harness's Chaos Toolkit controls, under a real `chaos run` of a tiny experiment that
needs no stack: python activities of its own, a fake Prometheus answering the safeguard's
queries with fixed client numbers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from support.http import reply, serve

from chaoshelius.report import Verdict, build_run_report

BIN = Path(sys.executable).parent
TINY_MODULE = """
import pathlib, time

def ok(seconds: float = 0.0) -> dict:
    time.sleep(seconds)
    return {"ok": True, "value": 1.0, "threshold": {"min_ratio": 0.9}, "query": "",
            "description": "fine"}

def touch(path: str) -> None:
    pathlib.Path(path).write_text("rolled back")

def fail() -> None:
    raise RuntimeError("the fault could not be injected")
"""


class FakePrometheus:
    """Answers instant queries: client requests in the window, successful ones, p99."""

    def __init__(self, total: float, success: float, p99: float) -> None:
        self.values = {"total": total, "success": success, "p99": p99}
        self.queries: list[str] = []


def _serve(fake: FakePrometheus) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            query = parse_qs(urlparse(self.path).query).get("query", [""])[0]
            fake.queries.append(query)
            if 'outcome="success"' in query:
                value = fake.values["success"]
            elif "histogram_quantile" in query:
                value = fake.values["p99"]
            else:
                value = fake.values["total"]
            body = {
                "status": "success",
                "data": {"resultType": "vector", "result": [
                    {"metric": {}, "value": [time.time(), str(value)]}
                ]},
            }  # fmt: skip
            reply(self, json.dumps(body).encode(), "application/json")

        def log_message(self, *args: Any) -> None:
            pass

    return serve(Handler)


@pytest.fixture
def prometheus() -> Iterator[tuple[FakePrometheus, str]]:
    fake = FakePrometheus(total=100, success=100, p99=0.02)
    server, url = _serve(fake)
    yield fake, url
    server.shutdown()
    server.server_close()


def _experiment(tmp: Path, prometheus_url: str, method: list[dict[str, Any]]) -> Path:
    (tmp / "tinyactivities.py").write_text(TINY_MODULE)
    run_dir = tmp / "runs" / "latest"
    experiment = {
        "version": "1.0.0",
        "title": "tiny",
        "description": "a tiny experiment that needs no stack",
        "configuration": {
            "prometheus_base_url": prometheus_url,
            "helius_run_dir": str(run_dir),
            "helius_http_timeout_seconds": 2,
        },
        "runtime": {"rollbacks": {"strategy": "always"}},
        "controls": [
            {"name": "helius-journal",
             "provider": {"type": "python", "module": "chaoshelius.controls.journal"}},
            {"name": "helius-safeguards",
             "provider": {"type": "python", "module": "chaoshelius.controls.safeguards",
                          "arguments": {"min_success_ratio": 0.5, "max_p99_seconds": 5.0,
                                        "interval_seconds": 0.2, "consecutive": 2}}},
        ],
        "steady-state-hypothesis": {"title": "fine", "probes": [
            {"type": "probe", "name": "fine",
             "provider": {"type": "python", "module": "tinyactivities", "func": "ok"},
             "tolerance": {"type": "jsonpath", "path": "$.ok", "expect": True}}]},
        "method": method,
        "rollbacks": [
            {"type": "action", "name": "undo",
             "provider": {"type": "python", "module": "tinyactivities", "func": "touch",
                          "arguments": {"path": str(tmp / "rolled-back")}}}],
    }  # fmt: skip
    path = tmp / "tiny.json"
    path.write_text(json.dumps(experiment))
    return path


def _hold(seconds: float) -> dict[str, Any]:
    return {
        "type": "action",
        "name": "hold",
        "provider": {
            "type": "python",
            "module": "tinyactivities",
            "func": "ok",
            "arguments": {"seconds": seconds},
        },
    }


def _chaos(tmp: Path, *args: str, env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [str(BIN / "chaos"), "--log-file", str(tmp / "chaos.log"), "run", *args],
        cwd=tmp,
        env={"PATH": str(BIN), "PYTHONPATH": str(tmp), "HOME": str(tmp), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return time.monotonic() - started


def test_journal_control_puts_a_standalone_runs_journal_in_the_run_dir(
    tmp_path: Path, prometheus: tuple[FakePrometheus, str]
) -> None:
    experiment = _experiment(tmp_path, prometheus[1], [_hold(0.5)])
    run_dir = tmp_path / "runs" / "latest"
    run_dir.mkdir(parents=True)
    (run_dir / "safeguard.json").write_text('{"tripped_at": 1, "reason": "stale"}')
    _chaos(tmp_path, str(experiment))  # no --journal-path: chaos writes ./journal.json
    assert (tmp_path / "journal.json").exists()
    assert json.loads((run_dir / "journal.json").read_text())["status"] == "completed"
    assert not (run_dir / "safeguard.json").exists()  # an earlier run's record is dropped
    done = subprocess.run(
        [str(BIN / "chaoshelius"), "report", "build", str(run_dir), "--offline"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert ": passed — " in done.stdout
    assert prometheus[0].queries, "the safeguard never looked at the clients"


def test_safeguard_aborts_the_method_rolls_back_and_the_report_says_aborted(
    tmp_path: Path, prometheus: tuple[FakePrometheus, str]
) -> None:
    fake, url = prometheus
    fake.values.update(total=100, success=20)  # 20 % of the clients' requests succeed
    experiment = _experiment(tmp_path, url, [_hold(60)])
    elapsed = _chaos(tmp_path, str(experiment))
    assert elapsed < 45, "the method was not stopped"
    run_dir = tmp_path / "runs" / "latest"
    journal = json.loads((run_dir / "journal.json").read_text())
    assert journal["status"] == "interrupted"
    assert (tmp_path / "rolled-back").exists(), "the rollbacks did not play"
    trip = json.loads((run_dir / "safeguard.json").read_text())
    assert trip["check"] == "success_ratio" and trip["value"] == pytest.approx(0.2)
    summary = build_run_report(run_dir, offline=True).summary
    assert summary.verdict is Verdict.ABORTED
    assert "client success 20.0%" in summary.reason and "rollback" in summary.reason
    assert summary.resilience_score == 0.0  # the after-method hypothesis never ran
    assert "aborted" in (run_dir / "report.html").read_text()


def test_safeguard_stays_quiet_when_off(
    tmp_path: Path, prometheus: tuple[FakePrometheus, str]
) -> None:
    fake, url = prometheus
    fake.values.update(p99=9.0)  # would trip on latency
    experiment = _experiment(tmp_path, url, [_hold(1.5)])
    _chaos(tmp_path, str(experiment), env={"HELIUS_SAFEGUARDS": "off"})
    run_dir = tmp_path / "runs" / "latest"
    assert json.loads((run_dir / "journal.json").read_text())["status"] == "completed"
    assert not (run_dir / "safeguard.json").exists()


def test_a_dry_run_and_a_failed_fault_are_not_judged(
    tmp_path: Path, prometheus: tuple[FakePrometheus, str]
) -> None:
    run_dir = tmp_path / "runs" / "latest"
    experiment = _experiment(tmp_path, prometheus[1], [_hold(0.1)])
    _chaos(tmp_path, "--dry", "activities", str(experiment))
    summary = build_run_report(run_dir, offline=True).summary
    assert summary.verdict is Verdict.NOT_JUDGED and "Dry run" in summary.reason
    assert summary.resilience_score is None and not summary.as_expected

    failing = {
        "type": "action",
        "name": "inject",
        "provider": {"type": "python", "module": "tinyactivities", "func": "fail"},
    }
    experiment = _experiment(tmp_path, prometheus[1], [failing, _hold(0.1)])
    _chaos(tmp_path, str(experiment))
    summary = build_run_report(run_dir, offline=True).summary
    assert json.loads((run_dir / "journal.json").read_text())["status"] == "completed"
    assert summary.verdict is Verdict.NOT_JUDGED
    assert "'inject' failed" in summary.reason


def test_every_experiment_declares_the_journal_and_safeguard_controls() -> None:
    from chaoslib.control import validate_controls

    experiments = sorted((Path(__file__).parents[2] / "experiments").glob("*.json"))
    assert experiments
    for path in experiments:
        experiment = json.loads(path.read_text())
        modules = [c["provider"]["module"] for c in experiment.get("controls", [])]
        ours = ["chaoshelius.controls.journal", "chaoshelius.controls.safeguards"]
        assert modules[-2:] == ours, path.name
        validate_controls(experiment)  # chaoslib imports them and checks the declarations
