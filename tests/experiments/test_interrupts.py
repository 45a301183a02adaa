"""Interrupted runs leave no fault behind, and still write what they measured.

Against the real local stack of the test session (`session_stack`, tests/conftest.py) with the
real `chaos` CLI and real Locust: each test starts an experiment, waits until its fault is
really active in the stack, then interrupts the runner the way a user or CI would.

- SIGTERM / SIGINT: chaostoolkit plays the rollbacks (strategy `always`), so the fault is gone
  when `chaos` exits, the journal says `interrupted`, and the load is stopped.
- SIGKILL: nothing can run, so the fault stays, but only until its TTL (the stack's
  dead-man's switch), and the run's measurements written so far stay on disk.
- The suite runner forwards SIGTERM to the running experiment and still builds its report.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support.stack import StackHandle, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = ROOT / "experiments" / "rds-path-cut.json"
CHAOS = str(Path(sys.executable).with_name("chaos"))
CHAOSHELIUS = str(Path(sys.executable).with_name("chaoshelius"))


def _env(stack: StackHandle, run_dir: Path) -> dict[str, str]:
    p = stack.ports
    return {
        **os.environ,
        "HELIUS_TARGET": "local",
        "HELIUS_RUN_DIR": str(run_dir),
        "HELIUS_CONTROL_URL": f"http://127.0.0.1:{p.control}",
        "HELIUS_CONTROL_TOKEN": stack.token,
        "HELIUS_PROMETHEUS_URL": f"http://127.0.0.1:{p.prometheus}",
        "HELIUS_RECO_URL": f"http://127.0.0.1:{p.reco_service}",
        "HELIUS_LOADGEN_METRICS_PORT": str(p.loadgen),
    }


def _experiment(tmp_path: Path, ttl_seconds: int) -> Path:
    """rds-path-cut.json with a shorter fault TTL (everything else as shipped)."""
    data: dict[str, Any] = json.loads(EXPERIMENT.read_text())
    for activity in data["method"]:
        arguments = activity["provider"].get("arguments", {})
        if "ttl_seconds" in arguments:
            arguments["ttl_seconds"] = ttl_seconds
    path = tmp_path / EXPERIMENT.name
    path.write_text(json.dumps(data))
    return path


def _path_faults(stack: StackHandle) -> list[dict[str, Any]]:
    return [f for f in stack.control.faults() if f["kind"] == "path"]


def _default_sigint() -> None:
    """In the child, before `chaos` starts: SIGINT as a terminal's Ctrl-C finds it. A test
    runner started in the background without job control (`cmd &` in a script) ignores SIGINT
    and its children inherit that; Chaos Toolkit then leaves SIGINT ignored, and this test
    would measure the runner's launch, not the harness."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_chaos(stack: StackHandle, experiment: Path, run_dir: Path) -> subprocess.Popen[bytes]:
    run_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(  # noqa: PLW1509  preexec_fn: one signal call, no threads involved
        [
            CHAOS,
            "--log-file",
            str(run_dir / "chaos.log"),
            "run",
            "--journal-path",
            str(run_dir / "journal.json"),
            str(experiment),
        ],  # fmt: skip
        env=_env(stack, run_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )


def _stop_load(stack: StackHandle, run_dir: Path) -> None:
    from chaoshelius.load.actions import stop_load

    config = {
        "helius_run_dir": str(run_dir),
        "helius_loadgen_metrics_port": stack.ports.loadgen,
    }
    stop_load(configuration=config)


def _loadgen_answers(stack: StackHandle) -> bool:
    import httpx

    try:
        httpx.get(f"http://127.0.0.1:{stack.ports.loadgen}/metrics", timeout=1)
    except httpx.HTTPError:
        return False
    return True


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_fault_rolls_back(
    session_stack: StackHandle, tmp_path: Path, signum: signal.Signals
) -> None:
    stack, run_dir = session_stack, tmp_path / "run"
    stack.wait_fully_ready()
    process = _start_chaos(stack, _experiment(tmp_path, ttl_seconds=120), run_dir)
    try:
        fault = wait_for(lambda: _path_faults(stack), 60, "the RDS path cut is active")[0]
        assert fault["target"] == "mlflow-rds" and fault["params"]["mode"] == "blackhole"
        time.sleep(2)  # mid-fault, with load running
        assert _loadgen_answers(stack)
        process.send_signal(signum)
        code = process.wait(timeout=90)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            _stop_load(stack, run_dir)
    assert code == 1  # interrupted, not completed
    assert _path_faults(stack) == [], "the fault outlived the interrupted run"
    journal = json.loads((run_dir / "journal.json").read_text())
    assert journal["status"] == "interrupted"
    assert {r["activity"]["name"] for r in journal["rollbacks"]} >= {"restore-mlflow-rds"}
    windows = json.loads((run_dir / "windows.json").read_text())
    assert windows and windows[0]["ended_at"] is not None, "the fault window was not closed"
    assert (run_dir / "locust_stats.csv").is_file(), "the load's measurements were lost"
    wait_for(lambda: not _loadgen_answers(stack), 15, "the load stopped")
    # and MLflow really is reachable through the path again
    wait_for(stack.alias_ok, 30, "MLflow answers an alias lookup (needs RDS)")


def test_sigkill_mid_fault_reverts_at_the_ttl(session_stack: StackHandle, tmp_path: Path) -> None:
    stack, run_dir, ttl = session_stack, tmp_path / "run", 15
    stack.wait_fully_ready()
    process = _start_chaos(stack, _experiment(tmp_path, ttl_seconds=ttl), run_dir)
    try:
        fault = wait_for(lambda: _path_faults(stack), 60, "the RDS path cut is active")[0]
        # mid-fault: the cut is in place and its window recorded (cut_path writes the window
        # right after the stack confirms the fault; a kill between the two is another test)
        wait_for((run_dir / "windows.json").exists, 10, "the fault window is recorded")
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        killed_at = time.time()
        assert _path_faults(stack), "the fault vanished although nobody could undo it"
        assert not stack.alias_ok(), "the path is cut: MLflow cannot answer"
        wait_for(lambda: not _path_faults(stack), ttl + 10, "the fault reverts at its TTL")
        reverted_at = time.time()
        assert reverted_at <= fault["expires_at"] + 3
        assert reverted_at - killed_at <= ttl + 3
        wait_for(stack.alias_ok, 30, "MLflow answers again after the TTL revert")
        windows = json.loads((run_dir / "windows.json").read_text())
        assert windows and windows[0]["kind"] == "path", "the fault window was not recorded"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        _stop_load(stack, run_dir)


def test_suite_runner_forwards_sigterm_and_still_reports(
    session_stack: StackHandle, tmp_path: Path
) -> None:
    """`chaoshelius suite run` interrupted mid-fault: rollback, report, index, exit 130."""
    stack, reports = session_stack, tmp_path / "reports"
    stack.wait_fully_ready()
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    _experiment(experiments, ttl_seconds=120)
    suite = subprocess.Popen(
        [
            CHAOSHELIUS,
            "suite",
            "run",
            "--experiments",
            str(experiments),
            "--reports",
            str(reports),
            "--state-dir",
            str(stack.state_dir),
            "--base-port",
            str(stack.ports.base),
            "--keep-stack",
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: _path_faults(stack), 90, "the suite's experiment cut the RDS path")
        suite.send_signal(signal.SIGTERM)
        out, _ = suite.communicate(timeout=150)
    finally:
        if suite.poll() is None:
            suite.kill()
            suite.wait()
    text = out.decode(errors="replace")
    assert suite.returncode == 130, text
    assert _path_faults(stack) == [], "the fault outlived the interrupted suite"
    (run_dir,) = list((reports / "runs").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["verdict"] == "interrupted", summary
    assert (run_dir / "report.html").is_file() and (reports / "index.html").is_file()
    assert "interrupted" in text
