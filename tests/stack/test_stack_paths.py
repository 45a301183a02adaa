"""Path faults on the mlflow-rds edge (MLflow pods -> PostgreSQL), and the TTL dead-man's switch.

Each fault is first shown on the wire (a PostgreSQL connection through the path proxy hangs,
is reset, or is slowed by the configured delay) and on MLflow (registry calls that need the
database fail), then recovery is shown: MLflow answers again within seconds, with the same
pods (names, pids, restart counts), i.e. without any restart.
"""

from __future__ import annotations

import json
import select
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from support.stack import StackHandle, outcome, wait_for

from chaoshelius.stack.procs import pid_alive
from chaoshelius.topology import EDGE_MLFLOW_RDS, App

pytestmark = pytest.mark.integration

RECOVERY_SECONDS = 10.0  # "within a few seconds" of the restore


def _mlflow_identity(stack: StackHandle) -> list[tuple[str, int, int, str]]:
    return sorted(
        (pod["name"], pod["pid"], pod["restarts"], pod["zone"])
        for pod in stack.pods(f"app={App.MLFLOW}")
    )


@pytest.fixture
def mlflow_before(stack: StackHandle) -> Iterator[list[tuple[str, int, int, str]]]:
    """MLflow pods before the fault; after the test they must be the very same processes."""
    before = _mlflow_identity(stack)
    assert stack.alias_ok()
    yield before


def _assert_same_mlflow_pods(stack: StackHandle, before: list[tuple[str, int, int, str]]) -> None:
    wait_for(
        lambda: all(pod["ready"] for pod in stack.pods(f"app={App.MLFLOW}")),
        60,
        "MLflow pods ready again",
    )
    assert _mlflow_identity(stack) == before, "an MLflow pod was restarted or replaced"
    assert all(pid_alive(pid) for _, pid, _, _ in before)


def _seconds_until_alias_ok(stack: StackHandle) -> float:
    started = time.monotonic()
    wait_for(stack.alias_ok, RECOVERY_SECONDS, "MLflow alias lookup through the service proxy")
    return time.monotonic() - started


def _pg_connect_outcome(stack: StackHandle, timeout: int = 2) -> tuple[float, str]:
    started = time.monotonic()
    try:
        conn = stack.pg_connect(timeout)
    except psycopg2.OperationalError as exc:
        return time.monotonic() - started, f"error: {str(exc).strip()[:120]}"
    conn.close()
    return time.monotonic() - started, "connected"


def test_blackhole_fails_mlflow_registry_calls_and_restore_heals_without_restart(
    stack: StackHandle, mlflow_before: list[tuple[str, int, int, str]]
) -> None:
    pod_url = stack.pods(f"app={App.MLFLOW},zone=zone-a")[0]["url"]

    fault = stack.control.cut_path(EDGE_MLFLOW_RDS, "blackhole", ttl_seconds=120)

    assert fault["params"] == {"mode": "blackhole"}
    # on the wire: the connection is accepted and then hangs (no RST), until libpq gives up
    seconds, result = _pg_connect_outcome(stack, timeout=2)
    assert result.startswith("error") and seconds >= 1.5, (seconds, result)
    # MLflow: a pod answers 503 after its own connect timeout (3 s), it does not hang forever
    seconds, result = outcome(lambda: stack.alias_lookup(pod_url, timeout=10))
    assert result == "HTTP 503" and 2.5 <= seconds < 8, (seconds, result)
    # readiness sees it: every MLflow pod turns not-ready, the service refuses or fails
    wait_for(
        lambda: not any(pod["ready"] for pod in stack.pods(f"app={App.MLFLOW}")),
        20,
        "MLflow pods not ready while the database is cut",
    )
    calls = [outcome(lambda: stack.alias_lookup(timeout=5)) for _ in range(3)]
    assert all(result != "HTTP 200" for _, result in calls), calls
    # the recommender does not need MLflow to answer
    assert stack.predict().status_code == 200

    removed = stack.control.restore(EDGE_MLFLOW_RDS)

    assert [f["id"] for f in removed] == [fault["id"]]
    healed = _seconds_until_alias_ok(stack)
    print(f"blackhole: MLflow answers {healed:.2f} s after the restore")
    _assert_same_mlflow_pods(stack, mlflow_before)
    assert stack.control.restore(EDGE_MLFLOW_RDS) == []  # idempotent
    assert stack.control.status()["proxies"][EDGE_MLFLOW_RDS]["mode"] == "normal"
    assert stack.alias_ok()


def test_reset_refuses_database_connections_quickly_and_restore_heals(
    stack: StackHandle, mlflow_before: list[tuple[str, int, int, str]]
) -> None:
    pod_url = stack.pods(f"app={App.MLFLOW},zone=zone-b")[0]["url"]

    stack.control.cut_path(EDGE_MLFLOW_RDS, "reset", ttl_seconds=120)

    seconds, result = _pg_connect_outcome(stack, timeout=5)
    assert result.startswith("error") and seconds < 1.0, (seconds, result)
    seconds, result = outcome(lambda: stack.alias_lookup(pod_url, timeout=10))
    # fails fast: well under the 3 s connect timeout a blackhole costs
    assert result == "HTTP 503" and seconds < 2.0, (seconds, result)
    wait_for(
        lambda: not any(pod["ready"] for pod in stack.pods(f"app={App.MLFLOW}")),
        20,
        "MLflow pods not ready while the database refuses",
    )
    assert not stack.alias_ok(timeout=5)

    stack.control.restore(EDGE_MLFLOW_RDS)

    healed = _seconds_until_alias_ok(stack)
    print(f"reset: MLflow answers {healed:.2f} s after the restore")
    _assert_same_mlflow_pods(stack, mlflow_before)


def _select_one_seconds(conn: Any) -> float:
    started = time.monotonic()
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    return time.monotonic() - started


def test_latency_adds_the_configured_delay_and_restore_removes_it(
    stack: StackHandle, mlflow_before: list[tuple[str, int, int, str]]
) -> None:
    latency_ms = 100
    pod_url = stack.pods(f"app={App.MLFLOW},zone=zone-c")[0]["url"]
    conn = stack.pg_connect()
    conn.autocommit = True
    try:
        base_query = statistics.median(_select_one_seconds(conn) for _ in range(5))
        base_mlflow, result = outcome(lambda: stack.alias_lookup(pod_url))
        assert result == "HTTP 200"

        stack.control.cut_path(EDGE_MLFLOW_RDS, "latency", ttl_seconds=120, latency_ms=latency_ms)

        # one query = one chunk each way on an open connection: +2 x latency
        slow_query = statistics.median(_select_one_seconds(conn) for _ in range(3))
        added_ms = (slow_query - base_query) * 1000
        print(f"latency {latency_ms} ms: SELECT 1 {base_query * 1000:.1f} -> "
              f"{slow_query * 1000:.1f} ms (+{added_ms:.0f} ms)")  # fmt: skip
        assert 1.8 * latency_ms <= added_ms <= 2 * latency_ms + 400, added_ms
        # MLflow still answers, only slower (several round trips per registry call)
        slow_mlflow, result = outcome(lambda: stack.alias_lookup(pod_url, timeout=20))
        assert result == "HTTP 200", result
        assert slow_mlflow - base_mlflow >= 2 * latency_ms / 1000, (base_mlflow, slow_mlflow)

        stack.control.restore(EDGE_MLFLOW_RDS)

        fast_query = statistics.median(_select_one_seconds(conn) for _ in range(5))
        assert fast_query < base_query + 0.05, (base_query, fast_query)
    finally:
        conn.close()
    _seconds_until_alias_ok(stack)
    _assert_same_mlflow_pods(stack, mlflow_before)


_INJECTOR = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from chaoshelius.stack.client import ControlClient
    client = ControlClient.for_state_dir(Path(sys.argv[1]))
    fault = client.cut_path(sys.argv[2], "blackhole", ttl_seconds=float(sys.argv[3]))
    print(json.dumps(fault), flush=True)
    time.sleep(600)
    """
)


def test_fault_of_a_sigkilled_injector_reverts_at_its_ttl(
    stack: StackHandle, mlflow_before: list[tuple[str, int, int, str]]
) -> None:
    ttl = 5.0
    injector = subprocess.Popen(
        [sys.executable, "-c", _INJECTOR, str(stack.state_dir), EDGE_MLFLOW_RDS, str(ttl)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert injector.stdout is not None
        ready, _, _ = select.select([injector.stdout], [], [], 30)
        assert ready, "the injector did not report its fault"
        fault = json.loads(injector.stdout.readline())
    finally:
        injector.send_signal(signal.SIGKILL)
        injector.wait(timeout=10)
        if injector.stdout is not None:
            injector.stdout.close()
    assert injector.returncode == -signal.SIGKILL
    assert fault["expires_at"] - fault["started_at"] == pytest.approx(ttl)

    # still active 2 s in, and the path really is cut
    time.sleep(max(0.0, fault["started_at"] + 2 - time.time()))
    assert [f["id"] for f in stack.control.faults()] == [fault["id"]]
    seconds, result = _pg_connect_outcome(stack, timeout=2)
    assert result.startswith("error") and seconds >= 1.5, (seconds, result)

    # gone by TTL + 2 s, reverted by the stack itself
    wait_for(lambda: stack.control.faults() == [], ttl + 4, "the fault expired")
    assert time.time() <= fault["expires_at"] + 2.0
    events = stack.control.request("GET", "/events")["events"]
    assert any(e["event"] == "fault expired" and e["fault"] == fault["id"] for e in events)
    seconds, result = _pg_connect_outcome(stack, timeout=2)
    assert result == "connected" and seconds < 1.0, (seconds, result)
    healed = _seconds_until_alias_ok(stack)
    print(f"ttl: MLflow answers {healed:.2f} s after the expiry was seen")
    _assert_same_mlflow_pods(stack, mlflow_before)
