"""Pods / network / zones activities through the local driver, over HTTP against a fake of the
control API contract (tests/support/fake_control.py): what is sent, what is recorded."""

from __future__ import annotations

from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed
from support.fake_control import FakeStack
from support.windows_file import read_windows

from chaoshelius import windows
from chaoshelius.exceptions import TargetError
from chaoshelius.network import actions as network
from chaoshelius.network import probes as network_probes
from chaoshelius.pods import actions as pods
from chaoshelius.pods import probes as pod_probes
from chaoshelius.zones import actions as zones
from chaoshelius.zones import probes as zone_probes


def test_kill_records_window_and_replacement_closes_it(
    fake_stack: tuple[FakeStack, str], configuration: dict[str, Any]
) -> None:
    stack, _ = fake_stack
    out = pods.kill_pods("mlflow", count=1, zone="zone-a", configuration=configuration)
    assert stack.requests[-1] == (
        "POST",
        "/pods/kill",
        {"selector": "app=mlflow,zone=zone-a", "count": 1},
    )
    killed = out["killed"]
    assert len(killed) == 1 and out["window"]["kind"] == "pod-kill"
    [recorded] = read_windows(configuration)
    assert recorded["ended_at"] is None and recorded["details"]["ready_before"]["mlflow"] == 3
    assert len(recorded["details"]["pods_before"]["helius-reco"]) == 3  # pods_survived reads it

    done = pods.await_pods_ready("mlflow", timeout_seconds=5, configuration=configuration)
    assert killed[0] not in done["ready"] and len(done["ready"]) == 3
    assert read_windows(configuration)[0]["ended_at"] == done["window"]["ended_at"]

    proof = pod_probes.pods_replaced("mlflow", configuration=configuration)
    assert proof["ok"], proof["description"]


def test_pods_replaced_fails_when_the_killed_pod_is_still_there(
    fake_stack: tuple[FakeStack, str], configuration: dict[str, Any]
) -> None:
    stack, _ = fake_stack
    survivor = stack.pods[0]["name"]
    windows.open_window(
        configuration["helius_run_dir"],
        "pod-kill",
        "helius-reco",
        details={"killed": [survivor], "ready_before": {"helius-reco": 3}},
    )
    result = pod_probes.pods_replaced("helius-reco", configuration=configuration)
    assert not result["ok"] and "still listed" in result["description"]


def test_window_probe_is_vacuous_before_and_fails_after_a_fault_that_recorded_nothing(
    configuration: dict[str, Any],
) -> None:
    before = pod_probes.pods_replaced("mlflow", configuration=configuration)
    assert before["ok"] and before["vacuous"]
    windows.mark_fault_phase()  # a fault action was called but failed before recording
    after = pod_probes.pods_replaced("mlflow", configuration=configuration)
    assert not after["ok"] and "no fault window" in after["description"]


def test_kill_with_no_match_is_an_actionable_failure(configuration: dict[str, Any]) -> None:
    with pytest.raises(TargetError, match="no running pod matches"):
        pods.kill_pods("mlflow", zone="zone-x", configuration=configuration)
    assert windows.fault_phase_started()


def test_scale_and_restore_are_idempotent(
    fake_stack: tuple[FakeStack, str], configuration: dict[str, Any]
) -> None:
    stack, _ = fake_stack
    out = pods.scale_app("mlflow", 0, ttl_seconds=45, configuration=configuration)
    assert stack.requests[-1] == ("POST", "/apps/mlflow/scale", {"replicas": 0, "ttl_seconds": 45})
    assert out["window"]["id"] == out["fault"]
    first = pods.restore_scale("mlflow", configuration=configuration)
    second = pods.restore_scale("mlflow", configuration=configuration)
    assert first["undone"] == [out["fault"]] and second["undone"] == []
    assert first["window"]["id"] == out["fault"] and second["window"] is None
    [recorded] = read_windows(configuration)
    assert recorded["ended_at"] == first["window"]["ended_at"]  # the rollback kept the first end


def test_cut_and_restore_path(
    fake_stack: tuple[FakeStack, str], configuration: dict[str, Any]
) -> None:
    stack, _ = fake_stack
    out = network.cut_path("mlflow-rds", "blackhole", ttl_seconds=40, configuration=configuration)
    assert ("POST", "/paths/mlflow-rds/faults", {"mode": "blackhole", "ttl_seconds": 40}) in (
        stack.requests
    )
    assert not network_probes.path_is_clear("mlflow-rds", configuration=configuration)["ok"]
    network.restore_path("mlflow-rds", configuration=configuration)
    network.restore_path("mlflow-rds", configuration=configuration)
    assert network_probes.path_is_clear("mlflow-rds", configuration=configuration)["ok"]
    unchanged = network_probes.source_pods_unchanged("mlflow-rds", configuration=configuration)
    assert unchanged["ok"], unchanged["description"]
    assert out["window"]["target"] == "mlflow-rds"


def test_source_pods_unchanged_fails_when_mlflow_was_restarted(
    fake_stack: tuple[FakeStack, str], configuration: dict[str, Any]
) -> None:
    network.cut_path("mlflow-rds", ttl_seconds=40, configuration=configuration)
    pods.kill_pods("mlflow", count=1, configuration=configuration)
    result = network_probes.source_pods_unchanged("mlflow-rds", configuration=configuration)
    assert not result["ok"] and "replaced since" in result["description"]


def _restart_in_place(stack: FakeStack, app: str) -> str:
    """What the kubelet does on a failed liveness probe: the pod keeps its name and is counted
    restarted (the local supervisor would rename it; the probes must not rely on that)."""
    with stack.lock:
        pod = next(p for p in stack.pods if p["app"] == app)
        pod["restarts"] += 1
    return str(pod["name"])


def test_the_local_driver_reports_restart_counts(
    fake_stack: tuple[FakeStack, str], configuration: dict[str, Any]
) -> None:
    stack, _ = fake_stack
    name = _restart_in_place(stack, "mlflow")
    pods.scale_app("helius-reco", 2, ttl_seconds=40, configuration=configuration)
    [recorded] = read_windows(configuration)
    assert recorded["details"]["restarts_before"]["mlflow"][name] == 1
    assert set(recorded["details"]["restarts_before"]["helius-reco"].values()) == {0}


def test_pods_survived_fails_when_a_pod_restarted_in_place(
    fake_stack: tuple[FakeStack, str], configuration: dict[str, Any]
) -> None:
    stack, _ = fake_stack
    pods.scale_app("mlflow", 0, ttl_seconds=40, configuration=configuration)
    healthy = pod_probes.pods_survived("helius-reco", kind="scale", configuration=configuration)
    assert healthy["ok"], healthy["description"]
    name = _restart_in_place(stack, "helius-reco")
    result = pod_probes.pods_survived("helius-reco", kind="scale", configuration=configuration)
    assert not result["ok"], result["description"]
    assert f"restarted in place since the fault started: ['{name} (1x)']" in (result["description"])


def test_source_pods_unchanged_fails_when_mlflow_restarted_in_place(
    fake_stack: tuple[FakeStack, str], configuration: dict[str, Any]
) -> None:
    stack, _ = fake_stack
    network.cut_path("mlflow-rds", ttl_seconds=40, configuration=configuration)
    name = _restart_in_place(stack, "mlflow")
    result = network_probes.source_pods_unchanged("mlflow-rds", configuration=configuration)
    assert not result["ok"], result["description"]
    assert f"restarted in place since: ['{name} (1x)']" in result["description"]


def test_a_timed_out_await_is_recorded_for_the_verdict(
    fake_stack: tuple[FakeStack, str], configuration: dict[str, Any]
) -> None:
    """Chaos Toolkit only logs a failed method action: the await records its timeout, and the
    readiness check of the after-method hypothesis fails on it."""
    pods.kill_pods("mlflow", count=1, configuration=configuration)
    with pytest.raises(ActivityFailed, match="ready replacement pod"):
        pods.await_pods_ready(
            "mlflow", replicas=4, timeout_seconds=0.5, configuration=configuration
        )
    [why] = windows.await_timeouts("mlflow")
    assert "of 4 after 0.5 s" in why
    ready = pod_probes.pods_ready("mlflow", 2, configuration=configuration)
    assert not ready["ok"] and why in ready["description"]


def test_cut_path_refuses_bad_arguments_before_calling_the_stack(
    fake_stack: tuple[FakeStack, str], configuration: dict[str, Any]
) -> None:
    with pytest.raises(ActivityFailed, match="unknown edge"):
        network.cut_path("mlflow-s3", configuration=configuration)
    with pytest.raises(ActivityFailed, match="needs latency_ms"):
        network.cut_path("reco-mlflow", mode="latency", configuration=configuration)
    assert fake_stack[0].requests == []


def test_drain_and_uncordon_zone(
    fake_stack: tuple[FakeStack, str], configuration: dict[str, Any]
) -> None:
    stack, _ = fake_stack
    out = zones.drain_zone("zone-b", ttl_seconds=50, configuration=configuration)
    assert ("POST", "/zones/zone-b/drain", {"ttl_seconds": 50}) in stack.requests
    assert read_windows(configuration)[0]["details"]["ready_before"] == {
        "helius-reco": 3,
        "mlflow": 3,
    }
    undone = zones.uncordon_zone("zone-b", configuration=configuration)
    assert undone["undone"] == [out["fault"]]
    assert zones.uncordon_zone("zone-b", configuration=configuration)["undone"] == []


def test_steady_state_probes_raise_before_the_fault_and_report_after(
    fake_stack: tuple[FakeStack, str], configuration: dict[str, Any]
) -> None:
    stack, _ = fake_stack
    for pod in stack.pods:
        if pod["zone"] == "zone-c":
            pod["ready"] = False
    with pytest.raises(ActivityFailed, match=r"no ready pod in \['zone-c'\]"):
        zone_probes.every_zone_has_ready_pods("mlflow", configuration=configuration)
    with pytest.raises(ActivityFailed, match="steady state not met before any fault"):
        pod_probes.pods_ready("mlflow", 3, configuration=configuration)
    windows.mark_fault_phase()
    result = pod_probes.pods_ready("mlflow", 3, configuration=configuration)
    assert not result["ok"] and result["value"] == 2
    zone = zone_probes.every_zone_has_ready_pods("mlflow", configuration=configuration)
    assert not zone["ok"] and "zone-c" in zone["description"]


def test_unreachable_control_api_names_the_fix(tmp_path: Any) -> None:
    configuration = {"helius_control_url": "http://127.0.0.1:1", "helius_run_dir": str(tmp_path)}
    with pytest.raises(TargetError, match="chaoshelius stack up"):
        pods.kill_pods("mlflow", configuration=configuration)
