"""`chaoshelius stack up | status | down` as a user runs them (the real CLI, in a subprocess).

The session stack (base 27000, or $HELIUS_TEST_STACK_BASE_PORT) checks `up` twice and `status`;
a second, small stack on the next base, 28000 (one recommender pod, no MLflow), checks a taken
port and `up`/`down` end to end.
Every command gets an explicit --state-dir: the default one may belong to someone else.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.stack import StackHandle, busy_ports, processes_under, stack_pids, survivors

from chaoshelius.stack.ports import StackPorts
from chaoshelius.stack.state import StackPaths, read_state
from chaoshelius.topology import EDGE_RECO_MLFLOW

pytestmark = pytest.mark.integration

SECOND_BASE = int(os.environ.get("HELIUS_TEST_STACK_BASE_PORT", "27000")) + 1000


def _cli_path() -> str:
    """The `chaoshelius` script of this interpreter's environment (or the one on PATH)."""
    sibling = Path(sys.executable).with_name("chaoshelius")
    return str(sibling) if sibling.exists() else shutil.which("chaoshelius") or "chaoshelius"


CLI = _cli_path()


def _cli(*args: str, timeout: float = 300) -> tuple[int, str, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [CLI, "stack", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


def test_up_twice_is_harmless(stack: StackHandle) -> None:
    state = read_state(StackPaths(stack.state_dir).state_file)
    assert state is not None
    pods = stack.names()

    code, out, err, seconds = _cli(
        "up", "--state-dir", str(stack.state_dir), "--base-port", str(stack.ports.base)
    )

    assert code == 0, err
    assert "already up" in out
    assert f"http://127.0.0.1:{stack.ports.reco_service}" in out
    assert f"http://127.0.0.1:{stack.ports.prometheus}" in out
    assert f"http://127.0.0.1:{stack.ports.control}" in out
    assert seconds < 15
    after = read_state(StackPaths(stack.state_dir).state_file)
    assert after is not None and after.pids == state.pids
    assert stack.names() == pods


def test_status_prints_the_pod_table_and_active_faults(stack: StackHandle) -> None:
    code, out, err, _ = _cli("status", "--state-dir", str(stack.state_dir))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "phase: ready"
    assert lines[1].split() == ["POD", "APP", "ZONE", "STATE", "RESTARTS", "AGE", "PORT"]
    for pod in stack.pods():
        [row] = [line.split() for line in lines if line.startswith(pod["name"] + " ")]
        assert row[1:5] == [pod["app"], pod["zone"], "ready", str(pod["restarts"])]
    assert "active faults: none" in out

    fault = stack.control.cut_path(EDGE_RECO_MLFLOW, "latency", ttl_seconds=120, latency_ms=20)
    code, out, err, _ = _cli("status", "--state-dir", str(stack.state_dir))
    assert code == 0, err
    [row] = [line.split() for line in out.splitlines() if line.startswith(fault["id"] + " ")]
    assert row[1:4] == ["path", EDGE_RECO_MLFLOW, "mode=latency,latency_ms=20"]
    stack.control.restore(EDGE_RECO_MLFLOW)

    code, out, _, _ = _cli("status", "--state-dir", str(stack.state_dir), "--json")
    assert code == 0 and json.loads(out)["phase"] == "ready"


@pytest.mark.parametrize("offset", [0, 433], ids=["control-port", "mlflow-rds-port"])
def test_taken_port_fails_fast_naming_the_port(tmp_path: Path, offset: int) -> None:
    ports = StackPorts(SECOND_BASE)
    taken = SECOND_BASE + offset
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", taken))
        blocker.listen()
        code, out, err, seconds = _cli(
            "up", "--state-dir", str(tmp_path / "stack"), "--base-port", str(SECOND_BASE)
        )
        assert code != 0
        assert f"port {taken} ({ports.listeners()[taken]}) is already in use" in err, err
        assert seconds < 10
        # nothing was started: no process, no stack.json, every other port still free
        assert processes_under(tmp_path) == []
        assert not (tmp_path / "stack" / "stack.json").exists()
        assert busy_ports(ports) == [taken]


def test_cli_up_status_down_leaves_no_process(tmp_path: Path) -> None:
    state_dir = tmp_path / "stack"
    profile = tmp_path / "small.json"
    profile.write_text(
        json.dumps(
            {
                "name": "cli-test",
                "mlflow": {"replicas": 0},
                "reco": {"replicas": 1},
                "bootstrap_model": False,
            }
        )
    )
    args = ["--state-dir", str(state_dir), "--base-port", str(SECOND_BASE)]
    ports = StackPorts(SECOND_BASE)
    try:
        code, out, err, _ = _cli("up", *args, "--profile", str(profile))
        assert code == 0, err + out
        assert "ready in" in out and "'cli-test'" in out
        code, out, err, _ = _cli("status", "--state-dir", str(state_dir))
        assert code == 0, err
        [row] = [line.split() for line in out.splitlines() if line.startswith("helius-reco-")]
        assert row[1:4] == ["helius-reco", "zone-a", "ready"]
        state = read_state(StackPaths(state_dir).state_file)
        assert state is not None
        pids = stack_pids(state)
        assert len(pids) >= 4  # supervisor, Prometheus, the pod, PostgreSQL (+ its workers)
    finally:
        code, out, err, _ = _cli("down", "--state-dir", str(state_dir))
    assert code == 0, err
    assert out.strip() == "stack stopped"
    assert survivors(pids, state_dir) == []
    assert busy_ports(ports) == []
    code, out, _, _ = _cli("down", "--state-dir", str(state_dir))
    assert code == 0 and out.startswith("no stack running")
    code, _, err, _ = _cli("status", "--state-dir", str(state_dir))
    assert code != 0 and "no stack running" in err
