"""The refresher's state machine against a fake registry: ok, down, hung, corrupt, back."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from helius_reco.exceptions import RegistryError
from helius_reco.lifecycle.cache import ModelCache
from helius_reco.lifecycle.store import ModelSource


def value(metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels or None)


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.01)


DOWN = RegistryError("connection refused", reason="unavailable")


def test_cold_start_without_cache_serves_the_baseline(make_refresher, metrics) -> None:
    refresher = make_refresher()
    served = refresher.load_local()
    assert served.source is ModelSource.BASELINE and served.version == "baseline"
    assert value(metrics, "reco_engine_model_info", version="baseline", source="baseline") == 1
    assert value(metrics, "reco_engine_in_fallback_mode") == 1
    assert not refresher.ready  # no registry attempt yet


def test_cold_start_with_cache_serves_the_cache(make_refresher, tmp_path: Path, artifact) -> None:
    ModelCache(tmp_path / "cache").save(artifact, "4")
    served = make_refresher().load_local()
    assert served.source is ModelSource.CACHE and served.version == "4"


def test_corrupt_cache_falls_back_to_baseline(make_refresher, tmp_path: Path, metrics) -> None:
    cache = ModelCache(tmp_path / "cache")
    cache.save(b"garbage", "4")
    served = make_refresher().load_local()
    assert served.source is ModelSource.BASELINE
    assert value(metrics, "reco_engine_artifact_rejected_total") == 1


def test_refresh_serves_the_registry_model_and_writes_the_cache(
    make_refresher, fake_registry, metrics, artifact, tmp_path: Path
) -> None:
    fake_registry.publish("3", artifact)
    refresher = make_refresher()
    refresher.load_local()
    outcome = refresher.refresh_once()
    assert outcome.ok and outcome.changed and outcome.version == "3"
    current = refresher.store.current
    assert current is not None and current.source is ModelSource.REGISTRY
    assert value(metrics, "reco_engine_in_fallback_mode") == 0
    assert value(metrics, "reco_engine_model_info", version="3", source="registry") == 1
    assert value(metrics, "reco_engine_model_info", version="baseline", source="baseline") is None
    assert (value(metrics, "reco_engine_last_successful_refresh_timestamp_seconds") or 0) > 0
    assert refresher.mlflow_connected
    cached = ModelCache(tmp_path / "cache").load()
    assert cached is not None and cached.version == "3"


def test_unchanged_alias_is_not_downloaded_again(make_refresher, fake_registry, artifact) -> None:
    fake_registry.publish("3", artifact)
    refresher = make_refresher()
    assert refresher.refresh_once().changed
    second = refresher.refresh_once()
    assert second.ok and not second.changed
    assert fake_registry.fetch_calls == 1 and fake_registry.resolve_calls == 2


def test_registry_down_keeps_the_model_and_raises_the_gauge(
    make_refresher, fake_registry, metrics, artifact
) -> None:
    fake_registry.publish("3", artifact)
    refresher = make_refresher()
    refresher.refresh_once()
    before = refresher.store.current
    fake_registry.failure = DOWN
    outcome = refresher.refresh_once()
    assert not outcome.ok and outcome.reason == "unavailable"
    assert refresher.store.current is before
    assert value(metrics, "reco_engine_in_fallback_mode") == 1
    assert value(metrics, "reco_engine_refresh_failures_total", reason="unavailable") == 1
    assert not refresher.mlflow_connected and refresher.in_fallback


def test_registry_back_with_a_new_version_is_picked_up(
    make_refresher, fake_registry, metrics, artifact, other_artifact
) -> None:
    fake_registry.publish("3", artifact)
    refresher = make_refresher()
    refresher.refresh_once()
    fake_registry.failure = DOWN
    refresher.refresh_once()
    fake_registry.failure = None
    fake_registry.publish("4", other_artifact)
    outcome = refresher.refresh_once()
    assert outcome.ok and outcome.changed
    assert refresher.store.current is not None and refresher.store.current.version == "4"
    assert value(metrics, "reco_engine_in_fallback_mode") == 0


def test_hung_registry_is_abandoned_at_the_deadline(
    make_refresher, fake_registry, metrics, artifact
) -> None:
    fake_registry.publish("3", artifact)
    refresher = make_refresher(deadline_seconds=0.3)
    refresher.refresh_once()
    fake_registry.hang = threading.Event()
    started = time.monotonic()
    outcome = refresher.refresh_once()
    elapsed = time.monotonic() - started
    assert not outcome.ok and outcome.reason == "timeout"
    assert 0.3 <= elapsed < 1.0
    assert refresher.store.current is not None and refresher.store.current.version == "3"
    assert value(metrics, "reco_engine_in_fallback_mode") == 1


def attempt_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """Refresh-attempt threads started since `before` was taken, alive now. Only these are
    counted: other tests' threads (servers, loops) may start or end at any time."""
    return [
        t for t in threading.enumerate() if t not in before and t.name.startswith("helius-refresh-")
    ]


def test_hung_attempts_are_bounded_then_recover(make_refresher, fake_registry, artifact) -> None:
    fake_registry.publish("3", artifact)
    refresher = make_refresher(deadline_seconds=0.1, max_hung=2)
    fake_registry.hang = threading.Event()
    threads_before = set(threading.enumerate())
    reasons = [refresher.refresh_once().reason for _ in range(5)]
    assert reasons == ["timeout", "timeout", "busy", "busy", "busy"]
    hung = attempt_threads(threads_before)
    assert sorted(t.name for t in hung) == ["helius-refresh-1", "helius-refresh-2"]  # no pile-up
    assert fake_registry.resolve_calls == 2
    fake_registry.hang.set()  # MLflow answers again: the abandoned attempts end
    fake_registry.hang = None
    wait_until(lambda: not any(t.is_alive() for t in hung))
    # the tight deadline was for the hang; a real download + decode on a loaded machine
    # can take longer than 0.1 s, which is not what this test is about
    refresher.deadline_seconds = 5.0
    assert refresher.refresh_once().ok
    wait_until(lambda: not attempt_threads(threads_before))  # the new attempt ended too


def test_corrupt_artifact_is_rejected_and_the_previous_model_serves(
    make_refresher, fake_registry, metrics, artifact, caplog: pytest.LogCaptureFixture
) -> None:
    fake_registry.publish("3", artifact)
    refresher = make_refresher()
    refresher.refresh_once()
    fake_registry.publish("4", b"PK\x03\x04 definitely not a model")
    with caplog.at_level(logging.ERROR, logger="helius_reco"):
        outcome = refresher.refresh_once()
    assert not outcome.ok and outcome.reason == "artifact_rejected" and outcome.version == "4"
    assert refresher.store.current is not None and refresher.store.current.version == "3"
    assert value(metrics, "reco_engine_artifact_rejected_total") == 1
    assert value(metrics, "reco_engine_refresh_failures_total", reason="artifact_rejected") == 1
    assert value(metrics, "reco_engine_in_fallback_mode") == 1
    assert any("version 4 rejected" in r.getMessage() for r in caplog.records)


def test_missing_alias_is_not_found(make_refresher, fake_registry, metrics) -> None:
    refresher = make_refresher()
    refresher.load_local()
    outcome = refresher.refresh_once()
    assert outcome.reason == "not_found"
    assert value(metrics, "reco_engine_refresh_failures_total", reason="not_found") == 1


def test_no_tracking_uri_means_disabled_and_fallback(make_refresher, metrics) -> None:
    refresher = make_refresher(model_registry=None)
    refresher.load_local()
    assert refresher.refresh_once().reason == "disabled"
    assert value(metrics, "reco_engine_in_fallback_mode") == 1


def test_failure_reasons_are_exported_at_zero(metrics) -> None:
    for reason in ("timeout", "unavailable", "not_found", "artifact_rejected", "busy"):
        assert value(metrics, "reco_engine_refresh_failures_total", reason=reason) == 0


def test_background_loop_follows_the_registry(
    make_refresher, fake_registry, metrics, artifact, other_artifact
) -> None:
    fake_registry.publish("3", artifact)
    refresher = make_refresher(interval_seconds=0.05, deadline_seconds=0.2)
    refresher.load_local()
    refresher.start()
    wait_until(lambda: refresher.ready and value(metrics, "reco_engine_in_fallback_mode") == 0)
    fake_registry.failure = DOWN
    wait_until(lambda: value(metrics, "reco_engine_in_fallback_mode") == 1)
    fake_registry.failure = None
    fake_registry.publish("4", other_artifact)
    wait_until(lambda: value(metrics, "reco_engine_in_fallback_mode") == 0)
    wait_until(lambda: refresher.store.current.version == "4")
    refresher.stop()
    assert refresher._thread is not None and not refresher._thread.is_alive()
