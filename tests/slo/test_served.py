"""The served-model probes (chaoshelius.slo.served) on a recorded client history.

Prometheus is replaced by the raw samples it would return for `helius_client_answers_total`
(one series per pod and model identity), so each test states exactly what the clients got.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaoshelius import windows
from chaoshelius.model.actions import PROMOTIONS
from chaoshelius.promapi import Series
from chaoshelius.slo import probes
from chaoshelius.topology import App, FaultKind

T0 = time.time() - 300.0  # the fault's start; the history is 300 s old, the load stopped


def series(pod: str, version: str, source: str, digest: str, counts: dict[float, int]) -> Series:
    """A counter scraped every second from T0 - 60 to T0 + 150, growing by `counts[t]` answers
    at the scrape `T0 + t` (each count holds until the next key)."""
    points, total, rate = [], 0.0, 0
    for step in range(-60, 151):
        rate = counts.get(float(step), rate)
        total += rate
        points.append((T0 + step, total))
    labels = {
        "reco_pod": pod,
        "model_version": version,
        "model_source": source,
        "model_digest": digest,
    }
    return Series(labels, points)


class FakePrometheus:
    def __init__(self, answers: list[Series]) -> None:
        self.answers = answers

    def matrix(self, query: str, at: float | None = None) -> list[Series]:
        assert query.startswith("helius_client_answers_total[")
        return self.answers


@pytest.fixture
def history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    state: dict[str, Any] = {"answers": [], "configuration": {"helius_run_dir": str(tmp_path)}}
    monkeypatch.setattr(
        "chaoshelius.slo.prometheus.client", lambda config: FakePrometheus(state["answers"])
    )
    windows.reset()
    windows.load_stopped(T0 + 150)
    yield state
    windows.reset()


def fault(run_dir: str, kind: FaultKind, target: str, end: float, **details: Any) -> None:
    windows.open_window(Path(run_dir), kind, target, details=details, started_at=T0)
    windows.close_windows(Path(run_dir), kind=kind, target=target, ended_at=T0 + end)


def promoted(history: dict[str, Any], answers: list[Series], **promotion: Any) -> dict[str, Any]:
    history["answers"] = answers
    run_dir = history["configuration"]["helius_run_dir"]
    windows.open_window(Path(run_dir), FaultKind.PATH, "reco-mlflow", started_at=T0)
    note = {"ok": True, "to_version": "2", "digest": "d2", "promoted_at": T0 + 10} | promotion
    windows.note_open_windows(Path(run_dir), PROMOTIONS, note)
    windows.close_windows(Path(run_dir), ended_at=T0 + 40)
    return probes.promoted_model_served_within(
        seconds=20, kind="path", configuration=history["configuration"]
    )


def test_every_pod_on_the_promoted_digest_in_time_passes(history: dict[str, Any]) -> None:
    result = promoted(
        history,
        [
            series("a", "1", "registry", "d1", {-60: 5, 45: 0}),
            series("a", "2", "registry", "d2", {45: 5}),
            series("b", "1", "registry", "d1", {-60: 5, 52: 0}),
            series("b", "2", "registry", "d2", {52: 5}),
        ],
    )
    assert result["ok"], result["description"]
    assert result["value"] == pytest.approx(11.0)  # b's last old answer at T0 + 51, moved at 40


def test_a_label_that_moves_without_the_model_fails(history: dict[str, Any]) -> None:
    result = promoted(
        history,
        [
            series("a", "1", "registry", "d1", {-60: 5, 45: 0}),
            series("a", "2", "registry", "d1", {45: 5}),  # new label, old digest
        ],
    )
    assert not result["ok"] and "never served version 2 digest d2" in result["description"]


def test_a_pod_still_on_the_old_model_after_n_seconds_fails(history: dict[str, Any]) -> None:
    result = promoted(
        history,
        [
            series("a", "2", "registry", "d2", {-60: 0, 45: 5}),
            series("b", "1", "registry", "d1", {-60: 5, 90: 0}),
            series("b", "2", "registry", "d2", {90: 5}),
        ],
    )
    assert not result["ok"] and "b still answered" in result["description"]


def test_a_failed_or_missing_promotion_or_no_data_fails(history: dict[str, Any]) -> None:
    failed = promoted(history, [series("a", "2", "registry", "d2", {-60: 5})], ok=False, error="x")
    assert not failed["ok"] and "the promotion failed: x" in failed["description"]
    assert not promoted(history, [])["ok"]


def test_no_pod_downgraded(history: dict[str, Any]) -> None:
    run_dir = history["configuration"]["helius_run_dir"]
    fault(run_dir, FaultKind.PATH, "mlflow-rds", 40)
    judge = lambda: probes.no_pod_downgraded(kind="path", configuration=history["configuration"])  # noqa: E731
    history["answers"] = [series("a", "1", "registry", "d1", {-60: 5})]
    assert judge()["ok"]
    history["answers"].append(series("b", "1", "cache", "d1", {-60: 5, 10: 0}))
    history["answers"].append(series("b", "baseline", "baseline", "b0", {10: 5, 45: 0}))
    result = judge()
    assert not result["ok"] and result["value"] == 35 * 5 and "b answered" in result["description"]
    history["answers"] = []
    assert not judge()["ok"]


def test_a_previous_runs_pods_are_not_this_runs(history: dict[str, Any]) -> None:
    """The 60 s read before the fault reach back past this run's start: a previous run's pods
    (here a fragile variant that dropped to the baseline during its own fault) are left out
    once this run's load start is known, and judged (wrongly) without it."""
    run_dir = history["configuration"]["helius_run_dir"]
    fault(run_dir, FaultKind.PATH, "mlflow-rds", 40)
    history["answers"] = [
        series("old", "1", "registry", "d1", {-60: 5, -40: 0}),
        series("old", "baseline", "baseline", "b0", {-40: 5, -20: 0}),
        series("a", "1", "registry", "d1", {-60: 0, -12: 5}),
    ]
    judge = lambda: probes.no_pod_downgraded(kind="path", configuration=history["configuration"])  # noqa: E731
    blind = judge()
    assert not blind["ok"] and "old answered" in blind["description"]
    windows.load_started(T0 - 13)
    result = judge()
    assert result["ok"], result["description"]


def test_a_replacement_served_its_cache(history: dict[str, Any]) -> None:
    run_dir = history["configuration"]["helius_run_dir"]
    fault(run_dir, FaultKind.SCALE, App.MLFLOW, 60)
    windows.open_window(
        Path(run_dir),
        FaultKind.POD_KILL,
        App.RECO,
        details={"pods_before": {App.RECO.value: ["a", "b"]}},
        started_at=T0 + 10,
    )
    windows.close_windows(Path(run_dir), kind=FaultKind.POD_KILL, ended_at=T0 + 20)
    judge = lambda: probes.replacement_served_cache(configuration=history["configuration"])  # noqa: E731
    old = [
        series("a", "1", "registry", "d1", {-60: 5, 10: 0}),
        series("b", "1", "registry", "d1", {-60: 5}),
    ]
    history["answers"] = [*old, series("c", "1", "cache", "d1", {20: 5})]
    result = judge()
    assert result["ok"], result["description"]
    assert result["last_good_digest"] == "d1"
    history["answers"] = [*old, series("c", "baseline", "baseline", "b0", {20: 5})]
    result = judge()
    assert not result["ok"] and "c answered" in result["description"]
    history["answers"] = old  # no replacement answered: no data
    assert not judge()["ok"]
