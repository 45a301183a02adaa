"""KPIs: the pure computations, then on the series recorded with the fixture runs."""

from __future__ import annotations

import json

import pytest
from report_fixtures import RUNS, load_journal

from chaoshelius.report.kpis import compute_kpis, fault_span, increase, time_to_recover
from chaoshelius.report.model import FaultWindow, Point, Series
from chaoshelius.report.prometheus import series_sets


def _s(label: str, values: list[tuple[float, float]], **labels: str) -> Series:
    return Series(label, labels, tuple(Point(t, v) for t, v in values))


def _window(start: float, end: float | None) -> FaultWindow:
    return FaultWindow("w", "kill", "app=mlflow", start, end, "journal")


def test_increase_uses_the_baseline_before_start_and_handles_resets() -> None:
    pts = [Point(0, 100), Point(10, 110), Point(20, 130), Point(30, 5), Point(40, 25)]
    assert increase(pts, 10, 20) == 20  # baseline is the sample at 10
    assert increase(pts, 15, 40) == 20 + 5 + 20  # reset at 30 counts from 0
    assert increase(pts, 50, 60) == 0


def test_fault_span_merges_windows_and_closes_open_ones_at_run_end() -> None:
    windows = [_window(10, 20), _window(15, None)]
    assert fault_span(windows, 50) == (10, 50)
    assert fault_span([_window(10, 20), _window(30, 35)], 50) == (10, 35)
    assert fault_span([], 50) is None


def test_time_to_recover_waits_for_the_last_unhealthy_sample() -> None:
    fallback = _s("p", [(t, 1.0 if t <= 24 else 0.0) for t in range(0, 40, 2)], pod="p")
    seconds, note = time_to_recover({"fallback": (fallback,)}, 20, 40)
    assert seconds == 6 and note is None  # first healthy sample after 24 is 26
    stuck = _s("p", [(t, 1.0) for t in range(0, 40, 2)], pod="p")
    assert time_to_recover({"fallback": (stuck,)}, 20, 40) == (
        None,
        "not recovered by the end of the run",
    )
    assert time_to_recover({}, 20, 40)[0] is None


def test_time_to_recover_counts_client_failures_per_step() -> None:
    ok = _s("s", [(t, t * 10.0) for t in range(0, 11)], outcome="success")
    bad = _s("f", [(t, 5.0 if t >= 7 else float(t) / 2) for t in range(0, 11)], outcome="failure")
    # failures grow until t=7, the fault ended at t=4: recovered at t=8
    seconds, _ = time_to_recover({"client_requests": (ok, bad)}, 4, 10)
    assert seconds == 4


def test_compute_kpis_synthetic() -> None:
    ok = _s("s", [(t, t * 9.0) for t in range(0, 31)], outcome="success")
    bad = _s("f", [(t, float(min(max(t - 10, 0), 10))) for t in range(0, 31)], outcome="failure")
    fallback = _s("p", [(t, 1.0 if 13 <= t <= 21 else 0.0) for t in range(0, 31)], pod="p")
    p99 = _s("p99", [(t, 0.05 + (0.25 if t == 15 else 0.0)) for t in range(0, 31)])
    kpis = compute_kpis(
        {"client_requests": (ok, bad), "fallback": (fallback,), "client_latency_p99": (p99,)},
        [_window(10, 20)],
        0,
        30,
    )
    assert kpis.availability_during_fault == pytest.approx(90 / 100)
    assert kpis.time_to_fallback_s == 3
    assert kpis.time_to_recover_s == 2  # fallback off at 22
    assert kpis.worst_p99_s == pytest.approx(0.3)
    assert kpis.fault_duration_s == 10


def test_no_window_means_no_fault_kpis_and_says_so() -> None:
    kpis = compute_kpis({}, [], 0, 10)
    assert kpis.availability_during_fault is None and kpis.time_to_recover_s is None
    assert any("no fault window" in n for n in kpis.notes)


def _recorded(name: str) -> dict[str, tuple[Series, ...]]:
    doc = json.loads((RUNS / name / "series.json").read_text())
    return {k: v.series for k, v in series_sets(doc).items()}


def _probe_value(name: str) -> float:
    probes = load_journal(name)["steady_states"]["after"]["probes"]
    value = next(p for p in probes if p["activity"]["name"].startswith("client-success"))
    return float(value["output"]["value"])


@pytest.mark.parametrize("name", ["passed", "deviated"])
def test_recorded_availability_agrees_with_the_hypothesis_probe(name: str) -> None:
    """Two independent measures of one thing: the probe's PromQL `increase` at the window's
    end, and the KPI from the range samples. They agree to within a scrape's worth."""
    from chaoshelius.report.journal import read_journal

    view = read_journal(load_journal(name))
    kpis = compute_kpis(_recorded(name), view.windows, view.started_at, view.ended_at)
    assert kpis.availability_during_fault is not None
    assert kpis.availability_during_fault == pytest.approx(_probe_value(name), abs=0.05)
    assert kpis.requests_during_fault and kpis.requests_during_fault > 50


def test_recorded_outage_fallback_and_recovery() -> None:
    from chaoshelius.report.journal import read_journal

    view = read_journal(load_journal("passed"))
    kpis = compute_kpis(_recorded("passed"), view.windows, view.started_at, view.ended_at)
    assert kpis.availability_during_fault == 1.0
    assert kpis.time_to_fallback_s is not None and 0 <= kpis.time_to_fallback_s < 3
    assert kpis.time_to_recover_s is not None and 0 <= kpis.time_to_recover_s < 4
    assert kpis.worst_p99_s is not None and 0 < kpis.worst_p99_s < 1


def test_recorded_deviation_never_falls_back() -> None:
    from chaoshelius.report.journal import read_journal

    view = read_journal(load_journal("deviated"))
    kpis = compute_kpis(_recorded("deviated"), view.windows, view.started_at, view.ended_at)
    assert kpis.time_to_fallback_s is None
    assert any("never reached 1" in n for n in kpis.notes)


def test_fallback_after_the_fault_is_not_time_to_fallback() -> None:
    """A pod (re)started after the fault reports fallback until its first refresh: that is
    recovery, and must not be read as a slow fallback."""
    late = _s("p", [(t, 1.0 if 25 <= t <= 27 else 0.0) for t in range(0, 40)], pod="new")
    kpis = compute_kpis({"fallback": (late,)}, [_window(10, 20)], 0, 40)
    assert kpis.time_to_fallback_s is None
    assert kpis.time_to_recover_s == 8  # healthy from t=28, 8 s after the fault ended
    inside = _s("p", [(t, 1.0 if 13 <= t <= 22 else 0.0) for t in range(0, 40)], pod="p")
    assert compute_kpis({"fallback": (inside,)}, [_window(10, 20)], 0, 40).time_to_fallback_s == 3


def test_p99_before_and_during_the_fault() -> None:
    p99 = _s("p99", [(t, 0.5 if 12 <= t <= 20 else 0.05) for t in range(0, 40)])
    kpis = compute_kpis({"client_latency_p99": (p99,)}, [_window(10, 20)], 0, 40)
    assert kpis.p99_before_fault_s == 0.05
    assert kpis.p99_during_fault_s == 0.5
    assert kpis.p99_ratio == pytest.approx(10)
    assert compute_kpis({}, [_window(10, 20)], 0, 40).p99_ratio is None
