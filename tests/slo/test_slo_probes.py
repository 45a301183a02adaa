"""SLO probes against a real Prometheus holding a known history (prom_fixture.py).

Each probe is shown to pass on the GOOD fault and to fail on the BAD one, and no-data is shown
to fail: a check that cannot fail is a defect.
"""

from __future__ import annotations

import copy
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chaoslib.activity import run_activity
from chaoslib.exceptions import ActivityFailed
from chaoslib.hypothesis import within_tolerance
from support.fake_control import FakeStack
from support.prom_fixture import (
    BAD,
    CALM,
    DRAIN,
    GONE_POD,
    GOOD,
    HUNG,
    LYING_POD,
    NOW,
    PromHistory,
    start_prometheus,
)

from chaoshelius import windows
from chaoshelius.exceptions import PrometheusError
from chaoshelius.slo import fallback, probes, verdict
from chaoshelius.slo.steady import NO_FALLBACK_NOW_PROBE, NO_FALLBACK_NOW_QUERY
from chaoshelius.topology import FALLBACK_GAUGE

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromHistory]:
    proc, hist = start_prometheus(tmp_path_factory.mktemp("prom"))
    yield hist
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def cfg(
    history: PromHistory,
    fake_stack: tuple[FakeStack, str],
    configuration: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    """Configuration for the recorded Prometheus; the probes' clock is the recording's end (an
    hour ago), as a live run judges right after its fault: "still up now" means then.
    Recovery probes also ask the target which pods are Ready: the local driver talks to the
    fake of the control API (fake_control.py), where every app of the history has three Ready
    pods, one per zone."""
    monkeypatch.setattr(verdict, "now", lambda: history.at(NOW))
    stack, _ = fake_stack
    for app in ("spread-lost", "spread-ok"):
        for zone in ("zone-a", "zone-b", "zone-c"):
            stack.add_pod(app, zone)
    return {**configuration, "prometheus_base_url": history.url}


def _window(
    cfg: dict[str, Any], hist: PromHistory, span: tuple[int, int], kind: str = "scale"
) -> windows.Window:
    window = windows.open_window(
        Path(cfg["helius_run_dir"]),
        kind,
        "mlflow",
        started_at=hist.at(span[0]),
        details={"ready_before": {"mlflow": 2}},
    )
    windows.close_windows(
        Path(cfg["helius_run_dir"]), window_id=window.id, ended_at=hist.at(span[1])
    )
    return window


def test_replicas_back_per_zone_needs_the_drained_zone_refilled(
    cfg: dict[str, Any], history: PromHistory
) -> None:
    """A zone drained and its pod replaced in another zone: three targets up again, so the
    cluster-wide count is back, but the spread is lost; per zone it is not back."""
    drain = _window(cfg, history, DRAIN, kind="drain")

    def back(app: str, per_zone: bool, seconds: float = 30) -> dict[str, Any]:
        return probes.replicas_recovered_within(
            app, seconds, replicas=3, per_zone=per_zone, window_id=drain.id, configuration=cfg
        )

    assert back("spread-lost", per_zone=False)["ok"]  # the count alone cannot see it
    lost = back("spread-lost", per_zone=True)
    assert not lost["ok"] and "['zone-a'] not back" in lost["description"]
    assert lost["threshold"]["per_zone"] == {"zone-a": 1, "zone-b": 1, "zone-c": 1}
    ok = back("spread-ok", per_zone=True)
    assert ok["ok"], ok["description"]
    assert ok["time_to_recover_seconds"] == pytest.approx(4, abs=1.5)  # 534 vs the end, 530
    assert not back("spread-ok", per_zone=True, seconds=2)["ok"]  # and the deadline bites


def test_client_success_ratio(cfg: dict[str, Any], history: PromHistory) -> None:
    def judge(window: windows.Window, **kw: Any) -> dict[str, Any]:
        return probes.client_success_ratio(
            0.99, recovery_seconds=5, window_id=window.id, configuration=cfg, **kw
        )

    good = _window(cfg, history, GOOD)
    result = judge(good)
    assert result["ok"], result["description"]
    assert result["value"] == pytest.approx(1.0)
    assert result["judged_seconds"] == pytest.approx(65)  # the fault and 5 s of recovery

    bad = _window(cfg, history, BAD)
    result = judge(bad)
    assert not result["ok"]
    assert result["value"] == pytest.approx(0.7, abs=0.03)

    hung = _window(cfg, history, HUNG)
    result = judge(hung)
    assert not result["ok"] and "throughput fell" in result["description"]
    assert result["value"] == pytest.approx(1.0)  # the ratio alone would have passed

    nodata = judge(good, request_name="/nope")
    assert not nodata["ok"] and "no client request data" in nodata["description"]


def test_client_success_ratio_judges_the_recovery_and_the_worst_burst(
    cfg: dict[str, Any], history: PromHistory
) -> None:
    """A fault "ending" at 295 whose recovery runs into BAD's errors: the fault window alone
    is clean, the recovery is not. And a 10 s burst at 30 % errors inside 150 s of clean
    traffic averages to 98 %, which the worst-5 s check still catches."""
    calm = _window(cfg, history, (CALM[0], 295))
    alone = probes.client_success_ratio(
        0.9, min_worst_ratio=0.5, recovery_seconds=0, window_id=calm.id, configuration=cfg
    )
    assert alone["ok"], alone["description"]
    with_recovery = probes.client_success_ratio(
        0.9, min_worst_ratio=0.95, recovery_seconds=15, window_id=calm.id, configuration=cfg
    )
    assert not with_recovery["ok"] and "worst 5 s" in with_recovery["description"]
    burst = _window(cfg, history, (BAD[0] - 140, BAD[0] + 10))
    averaged = probes.client_success_ratio(
        0.97, min_worst_ratio=0.0, recovery_seconds=0, window_id=burst.id, configuration=cfg
    )
    assert averaged["ok"] and averaged["value"] > 0.97
    caught = probes.client_success_ratio(
        0.97, min_worst_ratio=0.95, recovery_seconds=0, window_id=burst.id, configuration=cfg
    )
    assert not caught["ok"] and caught["worst_window_ratio"] == pytest.approx(0.7, abs=0.05)


def test_latency_p99_ratio(cfg: dict[str, Any], history: PromHistory) -> None:
    def judge(window: windows.Window, **kw: Any) -> dict[str, Any]:
        return probes.latency_p99_ratio(
            recovery_seconds=0, window_id=window.id, configuration=cfg, **kw
        )

    good = _window(cfg, history, GOOD)
    result = judge(good, max_ratio=2.0, noise_seconds=0.01)
    assert result["ok"], result["description"]
    bad = _window(cfg, history, BAD)
    result = judge(bad, max_ratio=2.0, noise_seconds=0.01)
    assert not result["ok"] and result["value"] > 10
    assert result["p99_before_seconds"] < 0.05  # the baseline holds none of the slow requests
    # the old fixed 1 s floor would have let a 20x slowdown through; the additive noise does not
    assert judge(bad, max_ratio=2.0, noise_seconds=1.0)["ok"]
    nodata = judge(bad, metric="nope_seconds")
    assert not nodata["ok"] and "no latency data" in nodata["description"]


def test_latency_is_also_held_to_the_services_absolute_slo(
    cfg: dict[str, Any], history: PromHistory
) -> None:
    """The relative allowance passes the good window; the absolute ceilings judge the same
    span's p99 and p50 on their own: just under what was measured fails, just over passes."""
    good = _window(cfg, history, GOOD)

    def judge(**slo: float) -> dict[str, Any]:
        return probes.latency_p99_ratio(
            max_ratio=2.0, noise_seconds=0.01, recovery_seconds=0, window_id=good.id,
            configuration=cfg, **slo,
        )  # fmt: skip

    relative = judge()
    assert relative["ok"] and relative["slo_p99_seconds"] is None
    p99_ms, p50_ms = relative["p99_during_seconds"] * 1000, relative["p50_during_seconds"] * 1000
    held = judge(slo_p99_ms=p99_ms * 1.1, slo_p50_ms=p50_ms * 1.1)
    assert held["ok"], held["description"]
    assert "SLO p99 <=" in held["description"] and held["slo_p50_seconds"] == pytest.approx(
        p50_ms * 1.1 / 1000
    )
    slow_tail = judge(slo_p99_ms=p99_ms * 0.9)
    assert not slow_tail["ok"] and "> the SLO's" in slow_tail["description"]
    slow_median = judge(slo_p50_ms=p50_ms * 0.9)
    assert not slow_median["ok"] and "p50" in slow_median["description"].split("FAILED")[1]


def test_fallback_engaged_and_cleared(cfg: dict[str, Any], history: PromHistory) -> None:
    good = _window(cfg, history, GOOD)
    engaged = probes.fallback_engaged_within(10, window_id=good.id, configuration=cfg)
    assert engaged["ok"], engaged["description"]
    assert engaged["time_to_fallback_seconds"] == pytest.approx(4, abs=1)
    assert len(engaged["pods"]) == 4
    assert not probes.fallback_engaged_within(2, window_id=good.id, configuration=cfg)["ok"]
    cleared = probes.fallback_cleared_within(
        10, recovery_seconds=40, window_id=good.id, configuration=cfg
    )
    assert cleared["ok"] and cleared["time_to_recover_seconds"] == pytest.approx(6, abs=1)
    assert not probes.fallback_cleared_within(
        3, recovery_seconds=40, window_id=good.id, configuration=cfg
    )["ok"]

    calm = _window(cfg, history, CALM)
    never = probes.fallback_engaged_within(30, window_id=calm.id, configuration=cfg)
    assert not never["ok"] and "never reported fallback" in never["description"]
    assert probes.fallback_never_engaged(window_id=calm.id, configuration=cfg)["ok"]
    assert not probes.fallback_never_engaged(window_id=good.id, configuration=cfg)["ok"]


def test_a_clear_within_two_scrapes_of_the_dependencys_return_is_that_return(
    cfg: dict[str, Any], history: PromHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GOOD: every pod clears at 166. The dependency's return is seen through its own scrape
    (1 s here): a pod that reached the first replica back clears up to two scrape intervals
    before Prometheus counts the app up (seen in a healthy cold-start run: 0.7 s). Beyond
    that, a clear is a gauge that gave up early."""
    good = _window(cfg, history, GOOD)

    def judged_with_back_at(offset: float) -> dict[str, Any]:
        monkeypatch.setattr(fallback, "_dependency_back_at", lambda *_: history.at(offset))
        return probes.fallback_engaged_within(
            10, after_app_back="mlflow", window_id=good.id, configuration=cfg
        )

    assert judged_with_back_at(167)["ok"]  # seen up 1 s after the pods cleared
    late = judged_with_back_at(170)  # 4 s: the pods cleared while it was still down
    assert not late["ok"] and "before the dependency was back" in late["description"]


def test_a_slow_undo_is_not_a_pod_clearing_early(cfg: dict[str, Any], history: PromHistory) -> None:
    """GOOD, but the undo call took 8 s (began at 160, returned at 168; a slow API server or a
    busy runner): the pods cleared at 166, when the dependency may already have been back.
    Judged from the undo's return alone they cleared "early"; from its start, they held."""

    def judged(lifting: int | None) -> dict[str, Any]:
        window = windows.open_window(
            Path(cfg["helius_run_dir"]), "scale", "mlflow", started_at=history.at(100)
        )
        closed = windows.close_windows(
            Path(cfg["helius_run_dir"]),
            window_id=window.id,
            ended_at=history.at(168),
            lifting_at=None if lifting is None else history.at(lifting),
        )
        if lifting is not None:
            assert closed[0].as_close_output()["lifting_at"] == history.at(lifting)
        return probes.fallback_engaged_within(10, window_id=window.id, configuration=cfg)

    blind = judged(None)
    assert not blind["ok"] and "before the dependency was back" in blind["description"]
    fair = judged(160)
    assert fair["ok"], fair["description"]
    assert not judged(167)["ok"]  # an undo begun after the clear: still early


def test_one_lying_pod_fails_fallback_engaged(cfg: dict[str, Any], history: PromHistory) -> None:
    """BAD: three pods report fallback, one stays at 0. `max()` over pods reads 1 the whole
    time (what the probe used to judge); judged per pod, the liar is named."""
    bad = _window(cfg, history, BAD)
    result = probes.fallback_engaged_within(10, window_id=bad.id, configuration=cfg)
    assert not result["ok"]
    assert f"{LYING_POD} never reported fallback" in result["description"]
    assert set(result["pods"]) == {"helius-reco-aaaaa", "helius-reco-bbbbb", "helius-reco-ddddd"}


def test_a_gauge_that_clears_early_or_a_pod_not_scraped_fails(
    cfg: dict[str, Any], history: PromHistory
) -> None:
    """HUNG: every pod reports fallback for 6 s, then 0 while the fault goes on; one pod is not
    scraped after 2 s. Both are failures: a pulse is not a fallback that held."""
    hung = _window(cfg, history, HUNG)
    result = probes.fallback_engaged_within(10, window_id=hung.id, configuration=cfg)
    assert not result["ok"]
    assert "before the dependency was back" in result["description"]
    assert f"{GONE_POD} stopped reporting" in result["description"]


def test_fallback_cleared_needs_an_ended_fault(cfg: dict[str, Any], history: PromHistory) -> None:
    window = windows.open_window(Path(cfg["helius_run_dir"]), "path", "mlflow-rds")
    result = probes.fallback_cleared_within(30, window_id=window.id, configuration=cfg)
    assert not result["ok"] and "has not ended" in result["description"]


def test_alert_fired(cfg: dict[str, Any], history: PromHistory) -> None:
    good = _window(cfg, history, GOOD)
    fired = probes.alert_fired("RecoEngineInFallback", 30, window_id=good.id, configuration=cfg)
    assert fired["ok"] and fired["time_to_alert_seconds"] == pytest.approx(15, abs=1)
    assert not probes.alert_fired("RecoEngineInFallback", 10, window_id=good.id, configuration=cfg)[
        "ok"
    ]
    # the alert of the GOOD fault, resolved 130 s before, does not count for the BAD one
    bad = _window(cfg, history, BAD)
    quiet = probes.alert_fired("RecoEngineInFallback", 60, window_id=bad.id, configuration=cfg)
    assert not quiet["ok"] and "never fired" in quiet["description"]
    # a fault starting while the alert was already firing (since 115) did not raise it
    late = _window(cfg, history, (130, 160))
    already = probes.alert_fired("RecoEngineInFallback", 30, window_id=late.id, configuration=cfg)
    assert not already["ok"] and already["firing_at_start"]
    assert "already firing" in already["description"]
    # a fault starting while the alert was pending (its `for:` clock running since 105) does
    # not show it raised the alert in time: firing 5 s in is the earlier trouble's
    pending = _window(cfg, history, (110, 160))
    early = probes.alert_fired("RecoEngineInFallback", 30, window_id=pending.id, configuration=cfg)
    assert not early["ok"] and early["pending_at_start"] and not early["firing_at_start"]
    assert "already pending" in early["description"]


def test_counter_grew_counts_a_series_born_in_the_window(
    cfg: dict[str, Any], history: PromHistory
) -> None:
    good = _window(cfg, history, GOOD)
    grew = probes.counter_grew(
        "reco_engine_refresh_failures_total", window_id=good.id, configuration=cfg
    )
    assert grew["ok"] and grew["value"] == 30  # born at 1: increase() would have said 29
    bad = _window(cfg, history, BAD)
    flat = probes.counter_grew(
        "reco_engine_refresh_failures_total", window_id=bad.id, configuration=cfg
    )
    assert not flat["ok"] and flat["value"] == 0
    nodata = probes.counter_grew("nope_total", window_id=good.id, configuration=cfg)
    assert not nodata["ok"] and nodata["value"] is None


def test_targets_went_down_and_recovered(cfg: dict[str, Any], history: PromHistory) -> None:
    good = _window(cfg, history, GOOD)
    down = probes.targets_went_down("mlflow", window_id=good.id, configuration=cfg)
    assert down["ok"] and down["up_before"] == 2
    zone = probes.targets_went_down("mlflow", zone="zone-a", window_id=good.id, configuration=cfg)
    assert zone["ok"]
    bad = _window(cfg, history, BAD)
    assert not probes.targets_went_down("mlflow", window_id=bad.id, configuration=cfg)["ok"]
    nothing = probes.targets_went_down("grafana", window_id=good.id, configuration=cfg)
    assert not nothing["ok"] and "no grafana target was up" in nothing["description"]

    back = probes.replicas_recovered_within("mlflow", 10, window_id=good.id, configuration=cfg)
    assert back["ok"] and back["time_to_recover_seconds"] == pytest.approx(3, abs=1.5)
    assert back["threshold"]["replicas"] == 2  # from the window's ready_before
    assert not probes.replicas_recovered_within("mlflow", 1, window_id=good.id, configuration=cfg)[
        "ok"
    ]
    # a replacement up within a scrape interval: Prometheus never sees fewer, which is back
    calm = _window(cfg, history, CALM)
    never = probes.replicas_recovered_within("mlflow", 10, window_id=calm.id, configuration=cfg)
    assert never["ok"] and "never seen below" in never["description"], never["description"]
    assert never["time_to_recover_seconds"] == 0.0


def test_replicas_back_needs_ready_pods_not_only_up_targets(
    cfg: dict[str, Any], history: PromHistory, fake_stack: tuple[FakeStack, str]
) -> None:
    """Prometheus saw MLflow back (GOOD), but the target says a pod is not Ready (it answers
    `/metrics` while `/ready` says 503): not back."""
    good = _window(cfg, history, GOOD)
    stack, _ = fake_stack
    assert probes.replicas_recovered_within("mlflow", 10, window_id=good.id, configuration=cfg)[
        "ok"
    ]
    with stack.lock:
        for pod in [p for p in stack.pods if p["app"] == "mlflow"][:2]:
            pod["ready"] = False
    result = probes.replicas_recovered_within("mlflow", 10, window_id=good.id, configuration=cfg)
    assert not result["ok"], result["description"]
    assert "FAILED on readiness: 1 of 2 mlflow pod(s) Ready now" in result["description"]


def test_replicas_back_per_zone_needs_a_ready_pod_in_each_zone(
    cfg: dict[str, Any], history: PromHistory, fake_stack: tuple[FakeStack, str]
) -> None:
    drain = windows.open_window(
        Path(cfg["helius_run_dir"]),
        "drain",
        "zone-a",
        started_at=history.at(DRAIN[0]),
        details={"zones_before": {"spread-ok": {"zone-a": 1, "zone-b": 1, "zone-c": 1}}},
    )
    windows.close_windows(
        Path(cfg["helius_run_dir"]), window_id=drain.id, ended_at=history.at(DRAIN[1])
    )
    stack, _ = fake_stack
    with stack.lock:
        next(p for p in stack.pods if p["app"] == "spread-ok" and p["zone"] == "zone-a")[
            "ready"
        ] = False
    result = probes.replicas_recovered_within(
        "spread-ok", 30, replicas=3, per_zone=True, window_id=drain.id, configuration=cfg
    )
    assert (
        not result["ok"] and "zone-a: 0 of 1 spread-ok pod(s) Ready now" in (result["description"])
    )


def test_a_timed_out_await_makes_the_recovery_and_readiness_probes_fail(
    cfg: dict[str, Any], history: PromHistory
) -> None:
    """The await for a replacement gave up (Chaos Toolkit only logs a failed method action);
    the pod became Ready later. Prometheus and the target both say "back" at judging time, but
    the run must deviate: the recovery probe and the readiness check both fail."""
    from chaoshelius.pods import probes as pod_probes

    good = _window(cfg, history, GOOD)
    windows.record_await_timeout("mlflow", "mlflow has 1 ready replacement pod(s) of 2 after 5 s")
    result = probes.replicas_recovered_within("mlflow", 10, window_id=good.id, configuration=cfg)
    assert not result["ok"] and "an await for mlflow timed out" in result["description"]
    ready = pod_probes.pods_ready("mlflow", 2, configuration=cfg)
    assert not ready["ok"] and "an await timed out in this run" in ready["description"]
    assert pod_probes.pods_ready("helius-reco", 3, configuration=cfg)["ok"]  # another app


def test_a_kill_whose_replacement_was_ready_late_is_not_back_in_time(
    cfg: dict[str, Any], history: PromHistory
) -> None:
    """`up` says back in time (the history's MLflow is down 60 s from the window's start, `up`
    back about 63 s after it, inside 70 s), but the await closed the kill window (the moment it
    saw the replacement Ready) 80 s after the kill: it took traffic too late."""
    kill = windows.open_window(
        Path(cfg["helius_run_dir"]),
        "pod-kill",
        "mlflow",
        started_at=history.at(GOOD[0]),
        details={"ready_before": {"mlflow": 2}},
    )
    windows.close_windows(
        Path(cfg["helius_run_dir"]), window_id=kill.id, ended_at=history.at(GOOD[0]) + 80
    )
    late = probes.replicas_recovered_within("mlflow", 70, window_id=kill.id, configuration=cfg)
    assert not late["ok"], late["description"]
    assert late["time_to_recover_seconds"] <= 70  # Prometheus alone would pass it
    assert "Ready 80.0 s after the kill (allowed 70 s)" in late["description"]
    in_time = probes.replicas_recovered_within("mlflow", 90, window_id=kill.id, configuration=cfg)
    assert in_time["ok"], in_time["description"]


def test_window_probes_are_vacuous_only_before_the_fault_phase(cfg: dict[str, Any]) -> None:
    before = probes.client_success_ratio(configuration=cfg)
    assert before["ok"] and before["vacuous"]
    windows.mark_fault_phase()
    after = probes.client_success_ratio(configuration=cfg)
    assert not after["ok"] and "no fault window" in after["description"]


def test_query_value_no_data_raises_before_and_fails_after(cfg: dict[str, Any]) -> None:
    # the history is an hour old: nothing is current, exactly like a dead scrape
    with pytest.raises(ActivityFailed, match="no data"):
        probes.query_value("max(reco_engine_in_fallback_mode)", max_value=0, configuration=cfg)
    windows.mark_fault_phase()
    result = probes.query_value("max(reco_engine_in_fallback_mode)", max_value=0, configuration=cfg)
    assert not result["ok"] and result["value"] is None
    assert probes.query_value("vector(0)", max_value=0, configuration=cfg)["ok"]
    assert not probes.query_value("vector(1)", max_value=0, configuration=cfg)["ok"]


def test_guarded_chaosprometheus_query(cfg: dict[str, Any]) -> None:
    assert probes.query("vector(1)", configuration=cfg)["data"]["result"][0]["value"][1] == "1"
    with pytest.raises(PrometheusError, match="no data"):
        probes.query("nope_metric", configuration=cfg)


@pytest.mark.parametrize(("offset", "steady"), [(CALM[0] + 10, True), (GOOD[0] + 10, False)])
def test_no_fallback_now_as_chaos_toolkit_users_write_it(
    cfg: dict[str, Any], history: PromHistory, offset: float, steady: bool
) -> None:
    """The block of chaoshelius.slo.steady run by chaoslib itself (run_activity, then its
    tolerance) against the real Prometheus: its own query, asked at a moment of the history
    when no pod was in fallback (answers "0") and one when every pod was (answers "1")."""
    probe = copy.deepcopy(NO_FALLBACK_NOW_PROBE)
    at = f"{FALLBACK_GAUGE} @ {history.at(offset):.3f}"
    probe["provider"]["arguments"]["query"] = NO_FALLBACK_NOW_QUERY.replace(FALLBACK_GAUGE, at)
    answer = run_activity(probe, cfg, None)
    assert answer["data"]["result"][0]["value"][1] == ("0" if steady else "1")
    assert within_tolerance(probe["tolerance"], answer, cfg, None) is steady


@pytest.fixture
def hung_server() -> Iterator[str]:
    """Accepts connections and never answers: a hung Prometheus."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


def test_hung_prometheus_fails_within_the_timeout(hung_server: str, tmp_path: Path) -> None:
    cfg = {
        "prometheus_base_url": hung_server,
        "helius_http_timeout_seconds": 1,
        "helius_run_dir": str(tmp_path),
    }
    for call in (
        lambda: probes.query_value("vector(1)", configuration=cfg),
        lambda: probes.query("vector(1)", configuration=cfg),
    ):
        started = time.monotonic()
        with pytest.raises(PrometheusError, match="1 s"):
            call()
        assert time.monotonic() - started < 3


def test_unreachable_prometheus_is_an_actionable_error(tmp_path: Path) -> None:
    cfg = {"prometheus_base_url": "http://127.0.0.1:1", "helius_run_dir": str(tmp_path)}
    with pytest.raises(PrometheusError, match="unreachable"):
        probes.query_value("vector(1)", configuration=cfg)


def test_fallback_cleared_after_the_dependency_is_back(
    cfg: dict[str, Any], history: PromHistory
) -> None:
    """GOOD: MLflow back up at 163, fallback cleared at 166: 3 s after MLflow, 6 s after the end."""
    good = _window(cfg, history, GOOD)
    back = probes.fallback_cleared_within(
        5, recovery_seconds=40, window_id=good.id, after_app_back="mlflow", configuration=cfg
    )
    assert back["ok"], back["description"]
    assert back["value"] == pytest.approx(3, abs=1.5)
    assert back["fault_to_recover_seconds"] == pytest.approx(6, abs=1)
    too_slow = probes.fallback_cleared_within(
        1, recovery_seconds=40, window_id=good.id, after_app_back="mlflow", configuration=cfg
    )
    assert not too_slow["ok"]
    never = probes.fallback_cleared_within(
        30, recovery_seconds=40, window_id=good.id, after_app_back="grafana", configuration=cfg
    )
    assert not never["ok"] and "never came back" in never["description"]


def test_counter_grew_ignores_a_replaced_pods_series(
    cfg: dict[str, Any], history: PromHistory
) -> None:
    """The old pod's counter (139 at its end, gone at 90) must not be subtracted from its
    replacement's (born at 110, 5 by the window's end): the growth is 5, not -134."""
    good = _window(cfg, history, GOOD)
    grew = probes.counter_grew("helius_test_replaced_total", window_id=good.id, configuration=cfg)
    assert grew["ok"] and grew["value"] == 5, grew["description"]
