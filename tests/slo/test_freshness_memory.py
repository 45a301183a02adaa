"""Refresh staleness after recovery and per-pod memory growth, judged on a fake Prometheus that
answers the probes' raw range queries (`metric{...}[Ns] @ t`) from recorded per-pod samples:
each probe passes a healthy history and fails the defect its negative control seeds."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from chaoshelius import windows
from chaoshelius.promapi import Series
from chaoshelius.slo import probes, prometheus, verdict
from chaoshelius.topology import LAST_REFRESH_GAUGE, RESIDENT_MEMORY

T0 = 1_000_000.0  # the fault's start
CUT_END = T0 + 30.0  # the fault's end (the path restored)
MIB = 1024.0 * 1024.0
Points = list[tuple[float, float]]


class FakePrometheus:
    """Raw samples per metric and pod; a range query returns those in (t - N, t]."""

    def __init__(self, history: dict[str, dict[str, Points]]) -> None:
        self.history = history

    def matrix(self, query: str, at: float | None = None) -> list[Series]:
        metric = query.split("{", 1)[0]
        found = re.search(r"\[(\d+)s\] @ ([\d.]+)", query)
        assert found, query
        span, end = float(found.group(1)), float(found.group(2))
        return [
            Series({"pod": pod, "app": "helius-reco"}, [p for p in pts if end - span < p[0] <= end])
            for pod, pts in self.history.get(metric, {}).items()
        ]


@pytest.fixture
def judge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Record one fault window [T0, CUT_END] and judge `history` as of `now`."""

    def run(history: dict[str, dict[str, Points]], now: float, probe: Any, **kw: Any) -> Any:
        monkeypatch.setattr(prometheus, "client", lambda config: FakePrometheus(history))
        monkeypatch.setattr(verdict, "now", lambda: now)
        window = windows.open_window(tmp_path, "path", "mlflow-rds", started_at=T0)
        windows.close_windows(tmp_path, window_id=window.id, ended_at=CUT_END)
        cfg = {"prometheus_base_url": "http://fake", "helius_run_dir": str(tmp_path)}
        return probe(window_id=window.id, configuration=cfg, **kw)

    return run


def _refreshing(
    since: float, until: float, every: float = 2.0, stop_at: float | None = None
) -> Points:
    """Scrapes every second of a gauge set at each successful refresh (every `every` s) from
    `since`; none after `stop_at`."""
    points, last, t = [], since, since
    while t <= until:
        if t - last >= every and (stop_at is None or t <= stop_at):
            last = t
        points.append((t, last))
        t += 1.0
    return points


def test_pods_that_keep_refreshing_are_fresh(judge: Any) -> None:
    pods = {f"reco-{z}": _refreshing(CUT_END + 1, CUT_END + 40) for z in "abc"}
    result = judge(
        {LAST_REFRESH_GAUGE: pods},
        CUT_END + 40,
        probes.refresh_fresh_after_recovery,
        max_age_seconds=10,
        min_pods=3,
    )
    assert result["ok"], result["description"]
    assert result["value"] <= 2.0 and set(result["pods"]) == set(pods)


def test_a_pod_that_refreshed_once_and_stopped_is_stale(judge: Any) -> None:
    pods = {f"reco-{z}": _refreshing(CUT_END + 1, CUT_END + 40) for z in "ab"}
    pods["reco-c"] = _refreshing(CUT_END + 1, CUT_END + 40, stop_at=CUT_END + 4)
    result = judge(
        {LAST_REFRESH_GAUGE: pods},
        CUT_END + 40,
        probes.refresh_fresh_after_recovery,
        max_age_seconds=10,
        min_pods=3,
    )
    assert not result["ok"]
    assert "reco-c's last successful refresh was" in result["description"]
    assert result["pods"]["reco-c"] > 30


def test_a_pod_that_never_refreshed_or_too_few_pods_fail(judge: Any) -> None:
    never = [(t, 0.0) for t, _ in _refreshing(CUT_END, CUT_END + 40)]
    history = {LAST_REFRESH_GAUGE: {"reco-a": _refreshing(CUT_END, CUT_END + 40), "reco-b": never}}
    result = judge(
        history, CUT_END + 40, probes.refresh_fresh_after_recovery, max_age_seconds=10, min_pods=3
    )
    assert not result["ok"]
    assert "reco-b never refreshed successfully" in result["description"]
    assert "only 2 pod(s) still reporting" in result["description"]


def test_no_refresh_data_fails_and_before_the_fault_holds_vacuously(judge: Any) -> None:
    result = judge({}, CUT_END + 40, probes.refresh_fresh_after_recovery, max_age_seconds=10)
    assert not result["ok"] and "no reco_engine_last_successful" in result["description"]
    windows.reset()
    vacuous = probes.refresh_fresh_after_recovery(max_age_seconds=10)
    assert vacuous["ok"] and vacuous["vacuous"]


def _rss(start: float, until: float, base_mib: float, growth_mib: float) -> Points:
    steps = int(until - start)
    return [(start + i, (base_mib + growth_mib * i / steps) * MIB) for i in range(steps + 1)]


def test_memory_growth_is_judged_per_pod_from_the_first_fault(judge: Any) -> None:
    pods = {
        "reco-a": _rss(T0 - 30, T0 + 60, 120, 0.6),
        "reco-b": _rss(T0 - 30, T0 + 60, 118, 0.4),
        # a replacement started during the run: from its own first sample (a cold process
        # lower than its peers, which must not count as the others' baseline)
        "reco-d": _rss(T0 + 20, T0 + 60, 90, 1.5),
    }
    healthy = judge(
        {RESIDENT_MEMORY: pods}, T0 + 60, probes.memory_growth_within, max_growth_mib=10
    )
    assert healthy["ok"], healthy["description"]
    # reco-a grew 0.6 MiB over 90 s, 0.4 of it after the fault's start
    assert healthy["pods"]["reco-a"] == pytest.approx(0.4, abs=0.01)
    assert healthy["pods"]["reco-d"] == pytest.approx(1.5, abs=0.01)

    windows.reset()
    pods["reco-c"] = _rss(T0 - 30, T0 + 60, 119, 45)  # a cache never evicted
    leaking = judge(
        {RESIDENT_MEMORY: pods}, T0 + 60, probes.memory_growth_within, max_growth_mib=10
    )
    assert not leaking["ok"] and "reco-c grew 30.0 MiB" in leaking["description"]
    assert leaking["value"] == pytest.approx(30.0, abs=0.01)


def test_no_memory_data_fails(judge: Any) -> None:
    result = judge({}, T0 + 60, probes.memory_growth_within, max_growth_mib=10)
    assert not result["ok"] and "no process_resident_memory_bytes" in result["description"]
