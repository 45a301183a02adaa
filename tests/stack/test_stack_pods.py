"""Pod faults on the real stack: kill (ReplicaSet-like replacement), zone drain, scale.

Each test first proves the fault bit (names gone, processes dead, zone empty), then recovery.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from support.stack import POD_READY_SECONDS, StackHandle, outcome, wait_for

from chaoshelius.stack.procs import pid_alive
from chaoshelius.topology import ZONES, App

pytestmark = pytest.mark.integration


def test_killed_mlflow_pod_is_replaced_under_a_new_name_while_the_service_answers(
    stack: StackHandle,
) -> None:
    selector = f"app={App.MLFLOW},zone=zone-b"
    [victim] = stack.pods(selector)
    others = stack.names(f"app={App.MLFLOW},zone!=zone-b")

    killed = stack.control.kill(selector, count=1)

    assert killed == [victim["name"]]
    wait_for(lambda: not pid_alive(victim["pid"]), 5, f"process {victim['pid']} gone")
    wait_for(lambda: victim["name"] not in stack.names(f"app={App.MLFLOW}"), 10, "old name removed")
    # the MLflow service keeps answering while the replacement starts (ready pods only)
    calls: list[tuple[float, str]] = []
    deadline = time.monotonic() + POD_READY_SECONDS
    replacement: dict[str, Any] = {}
    while time.monotonic() < deadline:
        calls.append(outcome(stack.alias_lookup))
        pods = stack.pods(selector)
        if pods and pods[0]["ready"]:
            replacement = pods[0]
            break
        time.sleep(0.2)
    assert replacement, f"no ready replacement in zone-b within {POD_READY_SECONDS:.0f} s"
    assert replacement["name"] != victim["name"]
    assert str(replacement["name"]).startswith(f"{App.MLFLOW}-")
    assert replacement["restarts"] == victim["restarts"] + 1
    assert replacement["pid"] != victim["pid"]
    failed = [call for call in calls if call[1] != "HTTP 200"]
    assert len(calls) >= 3 and failed == [], f"{len(failed)}/{len(calls)} failed: {failed[:5]}"
    assert stack.names(f"app={App.MLFLOW},zone!=zone-b") == others  # nobody else touched
    assert stack.alias_lookup(replacement["url"]).status_code == 200


def test_drained_zone_stays_down_until_uncordoned_while_other_zones_serve(
    stack: StackHandle,
) -> None:
    before = stack.pods("zone=zone-a")
    assert {pod["app"] for pod in before} == {App.MLFLOW, App.RECO}

    fault = stack.control.drain("zone-a", ttl_seconds=300)

    assert fault["kind"] == "drain" and fault["target"] == "zone-a"
    wait_for(lambda: stack.pods("zone=zone-a") == [], 15, "zone-a pods stopped")
    for pod in before:
        assert not pid_alive(pod["pid"]), f"{pod['name']} still has a live process"
    # past the replace delay (1.5 s) and then some: still nothing scheduled in zone-a
    replace_delay = stack.control.status()["profile"]["replace_delay_seconds"]
    time.sleep(replace_delay + 2.5)
    assert stack.pods("zone=zone-a") == []
    assert stack.control.status()["drained_zones"] == ["zone-a"]
    # the other zones serve: both services answer, only from zones b and c
    assert {pod["zone"] for pod in stack.pods()} == {"zone-b", "zone-c"}
    for _ in range(4):
        assert stack.predict().status_code == 200
        assert stack.alias_lookup().status_code == 200

    removed = stack.control.uncordon("zone-a")

    assert [fault_["id"] for fault_ in removed] == [fault["id"]]
    wait_for(lambda: _two_ready(stack), POD_READY_SECONDS, "zone-a pods back and ready")
    back = stack.pods("zone=zone-a")
    assert {pod["app"] for pod in back} == {App.MLFLOW, App.RECO}
    assert not {pod["name"] for pod in back} & {pod["name"] for pod in before}
    assert stack.control.status()["drained_zones"] == []


def _two_ready(stack: StackHandle) -> bool:
    pods = stack.pods("zone=zone-a")
    return len(pods) == 2 and all(pod["ready"] for pod in pods)


def test_scale_mlflow_to_zero_and_restore(stack: StackHandle) -> None:
    before = stack.pods(f"app={App.MLFLOW}")
    assert len(before) == len(ZONES)

    fault = stack.control.scale(App.MLFLOW, replicas=0, ttl_seconds=300)

    assert fault["params"] == {"replicas": 0}
    wait_for(lambda: stack.pods(f"app={App.MLFLOW}") == [], 15, "every MLflow pod stopped")
    assert not any(pid_alive(pod["pid"]) for pod in before)
    seconds, result = outcome(lambda: stack.alias_lookup(timeout=5))
    assert result != "HTTP 200", "the MLflow service still answers with zero replicas"
    assert seconds < 2, f"no MLflow pod should mean a fast refusal, took {seconds:.1f} s"
    # the recommender does not need MLflow on the hot path
    assert stack.predict().status_code == 200
    assert len(stack.pods(f"app={App.RECO}")) == len(ZONES)

    removed = stack.control.restore_scale(App.MLFLOW)

    assert [fault_["id"] for fault_ in removed] == [fault["id"]]
    after = wait_for(
        lambda: _all_ready(stack, App.MLFLOW), POD_READY_SECONDS, "3 MLflow pods ready"
    )
    assert sorted(pod["zone"] for pod in after) == sorted(ZONES)
    assert not {pod["name"] for pod in after} & {pod["name"] for pod in before}
    assert stack.alias_lookup().status_code == 200


def _all_ready(stack: StackHandle, app: App) -> list[dict[str, Any]]:
    pods = stack.pods(f"app={app}")
    ok = len(pods) == len(ZONES) and all(pod["ready"] for pod in pods)
    return pods if ok else []


def test_recommender_service_never_sends_to_a_killed_pod(stack: StackHandle) -> None:
    """The reco service proxy drops a killed pod at once: no request fails."""
    [victim] = stack.pods(f"app={App.RECO},zone=zone-c")
    stack.control.kill(f"pod={victim['name']}")
    results: list[int | str] = []
    deadline = time.monotonic() + POD_READY_SECONDS
    while time.monotonic() < deadline:
        try:
            results.append(stack.predict().status_code)
        except httpx.HTTPError as exc:
            results.append(type(exc).__name__)
        pods = stack.pods(f"app={App.RECO},zone=zone-c")
        if pods and pods[0]["ready"] and pods[0]["name"] != victim["name"]:
            break
        time.sleep(0.1)
    else:
        pytest.fail("no ready replacement for the killed recommender pod")
    assert len(results) >= 3
    assert set(results) == {200}, results
