"""The per-pod prediction probe and the prediction-only client SLO against a real Prometheus
holding a known history (per_pod_history.py): each is shown to pass on a calm window and to
fail on the defect it guards against, where the aggregate (or the old query) passed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from per_pod_history import (
    BAD_POD,
    CALM,
    HEALTH_RATE,
    KILLED,
    ONE_BAD,
    PER_POD_RATE,
    REPLACEMENT,
    SLOW,
    SLOW_POD,
)
from support.prom_fixture import PromHistory

from chaoshelius import windows
from chaoshelius.slo import probes

pytestmark = pytest.mark.integration


def _window(cfg: dict[str, Any], hist: PromHistory, span: tuple[int, int]) -> windows.Window:
    run_dir = Path(cfg["helius_run_dir"])
    window = windows.open_window(run_dir, "path", "mlflow-rds", started_at=hist.at(span[0]))
    windows.close_windows(run_dir, window_id=window.id, ended_at=hist.at(span[1]))
    return window


def _per_pod(cfg: dict[str, Any], window: windows.Window, **kw: Any) -> dict[str, Any]:
    return probes.pods_prediction_slo(
        recovery_seconds=0, baseline_seconds=10, window_id=window.id, configuration=cfg, **kw
    )


def test_one_bad_pod_fails_per_pod_where_the_fleet_ratio_passes(
    pod_cfg: dict[str, Any], pod_history: PromHistory
) -> None:
    result = _per_pod(pod_cfg, _window(pod_cfg, pod_history, ONE_BAD))
    assert not result["ok"]
    pods = result["pods"]
    # the 500 series is born with the fault: its first errors count (increase() would lose them)
    assert pods[BAD_POD]["error_ratio"] == pytest.approx(0.04, abs=0.002)
    assert f"{BAD_POD} failed 4.00%" in result["description"]
    assert pods[SLOW_POD]["error_ratio"] == 0 and pods[SLOW_POD]["judged"]
    # /health (as many calls, all 200) is not counted: only the predictions
    assert pods[SLOW_POD]["requests"] == pytest.approx(PER_POD_RATE * 60, rel=0.02)
    # killed at the start: too few answers to judge; its replacement is judged from its start
    assert result["not_judged"] == [KILLED] and not pods[KILLED]["judged"]
    assert pods[REPLACEMENT]["judged"]
    assert pods[REPLACEMENT]["requests"] == pytest.approx(PER_POD_RATE * 30, rel=0.05)
    fleet = sum(p["errors"] for p in pods.values()) / sum(p["requests"] for p in pods.values())
    assert fleet < 0.02  # the fleet's: 1.6 % (a pod short for half the window), a third of it


def test_one_slow_pod_fails_per_pod_latency(
    pod_cfg: dict[str, Any], pod_history: PromHistory
) -> None:
    slow = _window(pod_cfg, pod_history, SLOW)
    result = _per_pod(pod_cfg, slow)
    assert not result["ok"] and f"{SLOW_POD} p99" in result["description"]
    assert result["p99_before_seconds"] < 0.025
    assert result["pods"][SLOW_POD]["p99_seconds"] > result["allowed_seconds"]
    assert all(p["p99_seconds"] < 0.025 for k, p in result["pods"].items() if k != SLOW_POD)
    # a looser tail allowance (x3 + 1 s, the restart class before 2026-12-07) lets it through
    assert _per_pod(pod_cfg, slow, noise_seconds=1.0)["ok"]


def test_a_calm_window_passes_and_no_judged_pod_fails(
    pod_cfg: dict[str, Any], pod_history: PromHistory
) -> None:
    calm = _window(pod_cfg, pod_history, CALM)
    result = _per_pod(pod_cfg, calm)
    assert result["ok"], result["description"]
    assert result["value"] == 0
    assert sorted(p for p, v in result["pods"].items() if v["judged"]) == ["a", "b", REPLACEMENT]
    nobody = _per_pod(pod_cfg, calm, min_requests=10**6)
    assert not nobody["ok"] and "0 pod(s) with >= 1000000 answers" in nobody["description"]
    nodata = _per_pod(pod_cfg, calm, route="/nope")
    assert not nodata["ok"]


def test_health_calls_do_not_dilute_the_client_success_slo(
    pod_cfg: dict[str, Any], pod_history: PromHistory
) -> None:
    """1.5 % of predictions fail; the load's /health calls (as many, all fine) made that 0.75 %
    of all requests, which the 99 % floor passed."""
    bad = _window(pod_cfg, pod_history, ONE_BAD)

    def judge(**kw: Any) -> dict[str, Any]:
        return probes.client_success_ratio(
            0.99,
            min_worst_ratio=0.9,
            recovery_seconds=0,
            window_id=bad.id,
            configuration=pod_cfg,
            **kw,
        )

    predictions = judge()
    assert not predictions["ok"] and predictions["value"] == pytest.approx(0.985, abs=0.002)
    assert 'name="/predict"' in predictions["query"]
    everything = judge(request_name=None)  # what the probe asked before: every name
    assert everything["ok"] and everything["value"] == pytest.approx(0.9925, abs=0.002)
    assert HEALTH_RATE  # (the server's /health is in the history too: see the per-pod tests)


def test_health_calls_do_not_dilute_the_client_latency_slo(
    pod_cfg: dict[str, Any], pod_history: PromHistory
) -> None:
    """1.5 % of predictions take 0.8 s: past their p99; 0.75 % of all requests is not."""
    bad = _window(pod_cfg, pod_history, ONE_BAD)

    def judge(**kw: Any) -> dict[str, Any]:
        return probes.latency_p99_ratio(
            max_ratio=3.0,
            noise_seconds=0.05,
            recovery_seconds=0,
            window_id=bad.id,
            configuration=pod_cfg,
            **kw,
        )

    predictions = judge()
    assert not predictions["ok"] and predictions["p99_during_seconds"] > 0.25
    assert judge(request_name=None)["ok"]  # every name, as before: diluted under the tail
