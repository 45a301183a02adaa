"""Follow the registry alias in the background, bounded by an overall deadline per attempt.

States, as the metrics show them:

    start: cache or baseline, fallback=1 -- refresh ok ----------> registry model, fallback=0
    registry model, fallback=0 ----------- refresh fails -------> same model, fallback=1
    any ---------------------------------- artifact rejected ---> same model, fallback=1

Each attempt runs in its own daemon thread; the refresher waits for it at most
`deadline_seconds`, then abandons it (its result is discarded). At most `max_hung` attempts
may be alive at once: past that, attempts are skipped (reason `busy`) until one ends, so a
hung MLflow neither blocks the refresher nor piles up threads. MLflow's own HTTP timeouts
(see `Settings.mlflow_client_env`) and the artifact download's deadline (the same
`deadline_seconds`, see `lifecycle.registry`) make abandoned attempts end by themselves soon
after.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass

from helius_reco.exceptions import ArtifactError, RegistryError
from helius_reco.lifecycle.cache import ModelCache
from helius_reco.lifecycle.registry import ModelRef, ModelRegistry
from helius_reco.lifecycle.store import (
    BASELINE_VERSION,
    ModelSource,
    ModelStore,
    ServedModel,
)
from helius_reco.metrics import Metrics
from helius_reco.model.artifact import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DECOMPRESSED_BYTES,
    DEFAULT_MAX_HISTORY_NEIGHBORS,
    decode,
)
from helius_reco.model.recommender import RecoModel
from helius_reco.model.training import load_baseline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefreshOutcome:
    """What one refresh attempt concluded."""

    ok: bool
    reason: str | None  # one of metrics.REFRESH_FAILURE_REASONS when not ok
    version: str | None  # the version the alias pointed at, when it could be resolved
    changed: bool  # a new model is being served
    detail: str
    duration_seconds: float


@dataclass(frozen=True)
class _Candidate:
    ref: ModelRef
    data: bytes | None  # None: the alias still points at the version being served
    model: RecoModel | None


class _Attempt:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.reached = False
        self.result: _Candidate | None = None
        self.error: Exception | None = None


class Refresher:
    """Keeps `store` on the registry's current model; falls back to cache, then baseline."""

    def __init__(
        self,
        store: ModelStore,
        model_registry: ModelRegistry | None,
        cache: ModelCache | None,
        metrics: Metrics,
        *,
        interval_seconds: float,
        deadline_seconds: float,
        max_hung: int = 2,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
        max_history_neighbors: int = DEFAULT_MAX_HISTORY_NEIGHBORS,
    ) -> None:
        self.store = store
        self.model_registry = model_registry
        self.cache = cache
        self.metrics = metrics
        self.interval_seconds = interval_seconds
        self.deadline_seconds = deadline_seconds
        self.max_bytes = max_bytes
        self.max_decompressed_bytes = max_decompressed_bytes
        self.max_history_neighbors = max_history_neighbors
        self.initial_attempt_done = threading.Event()
        self.last_outcome: RefreshOutcome | None = None
        self._slots = threading.BoundedSemaphore(max_hung)
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._counter = itertools.count(1)

    # -- state read by the routes -------------------------------------------------------
    @property
    def mlflow_connected(self) -> bool:
        """The last attempt reached the registry (resolved the alias)."""
        outcome = self.last_outcome
        return outcome is not None and outcome.version is not None

    @property
    def in_fallback(self) -> bool:
        """Not confirmed on the registry's current model (what the fallback gauge says)."""
        outcome = self.last_outcome
        return outcome is None or not outcome.ok

    @property
    def ready(self) -> bool:
        return self.store.current is not None and self.initial_attempt_done.is_set()

    # -- lifecycle ----------------------------------------------------------------------
    def load_local(self) -> ServedModel:
        """Serve the on-disk cache if it is valid, else the packaged baseline. Fast, no network."""
        current = self.store.current
        if current is not None:
            return current
        served: ServedModel | None = None
        if self.cache is not None:
            try:
                cached = self.cache.load()
            except ArtifactError as exc:
                self.metrics.artifact_rejected.inc()
                log.error("cached model rejected, using the baseline: %s", exc)
                cached = None
            if cached is not None:
                served = ServedModel(
                    cached.model, cached.version, ModelSource.CACHE, cached.model.fingerprint()
                )
        if served is None:
            baseline = load_baseline()
            served = ServedModel(
                baseline, BASELINE_VERSION, ModelSource.BASELINE, baseline.fingerprint()
            )
        self.store.swap(served)
        self.metrics.set_model(served.version, served.source)
        log.info("serving %s model version %s", served.source, served.version)
        return served

    def start(self) -> None:
        """Refresh now, then every `interval_seconds`, in a daemon thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="helius-refresher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(self.deadline_seconds + 1.0 if timeout is None else timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh_once()
            except Exception:  # the loop must outlive any bug in one attempt
                log.exception("refresh attempt crashed")
            finally:
                self.initial_attempt_done.set()
            if self._stop.wait(self.interval_seconds):
                return

    # -- one attempt --------------------------------------------------------------------
    def refresh_once(self) -> RefreshOutcome:
        """One bounded attempt to confirm or replace the served model from the registry."""
        with self._refresh_lock:
            started = time.monotonic()
            outcome = self._attempt(started)
            duration = time.monotonic() - started
            outcome = RefreshOutcome(
                outcome.ok,
                outcome.reason,
                outcome.version,
                outcome.changed,
                outcome.detail,
                duration,
            )
            self._record(outcome)
            return outcome

    def _attempt(self, started: float) -> RefreshOutcome:
        registry = self.model_registry
        if registry is None:
            return _failure("disabled", None, "no MLflow tracking URI configured")
        if not self._slots.acquire(blocking=False):
            return _failure("busy", None, "earlier abandoned attempts are still running")
        attempt = _Attempt()
        current = self.store.current
        worker = threading.Thread(
            target=self._work,
            args=(registry, attempt, current),
            name=f"helius-refresh-{next(self._counter)}",
            daemon=True,
        )
        try:
            worker.start()
        except RuntimeError:
            self._slots.release()
            raise
        remaining = self.deadline_seconds - (time.monotonic() - started)
        if not attempt.done.wait(max(remaining, 0.0)):
            return _failure(
                "timeout",
                None,
                f"no answer within the {self.deadline_seconds:g} s deadline; attempt abandoned",
            )
        error = attempt.error
        if isinstance(error, RegistryError):
            return _failure(error.reason, None, str(error))
        if isinstance(error, ArtifactError):
            self.metrics.artifact_rejected.inc()
            version = attempt.result.ref.version if attempt.result else None
            return _failure("artifact_rejected", version or "?", str(error))
        if error is not None:
            log.error("refresh attempt failed unexpectedly", exc_info=error)
            return _failure("unavailable", None, f"{type(error).__name__}: {error}")
        candidate = attempt.result
        assert candidate is not None  # noqa: S101  done without error means a result (for mypy)
        if candidate.model is None or candidate.data is None:
            return RefreshOutcome(True, None, candidate.ref.version, False, "unchanged", 0.0)
        self._serve(candidate.ref, candidate.data, candidate.model)
        return RefreshOutcome(True, None, candidate.ref.version, True, "new model", 0.0)

    def _work(
        self, registry: ModelRegistry, attempt: _Attempt, current: ServedModel | None
    ) -> None:
        try:
            ref = registry.resolve()
            attempt.reached = True
            if (
                current is not None
                and current.source == ModelSource.REGISTRY
                and current.version == ref.version
            ):
                attempt.result = _Candidate(ref, None, None)
                return
            attempt.result = _Candidate(ref, None, None)  # lets a rejection name the version
            data = registry.fetch(ref)
            model = decode(
                data,
                max_bytes=self.max_bytes,
                max_decompressed_bytes=self.max_decompressed_bytes,
                max_history_neighbors=self.max_history_neighbors,
            )
            attempt.result = _Candidate(ref, data, model)
        except Exception as exc:  # handed to the refresher thread, which classifies it
            attempt.error = exc
        finally:
            self._slots.release()
            attempt.done.set()

    def _serve(self, ref: ModelRef, data: bytes, model: RecoModel) -> None:
        served = ServedModel(model, ref.version, ModelSource.REGISTRY, model.fingerprint())
        previous = self.store.swap(served)
        self.metrics.set_model(served.version, served.source)
        log.info(
            "now serving registry version %s (was %s %s)",
            ref.version,
            previous.source if previous else "nothing",
            previous.version if previous else "",
        )
        if self.cache is not None:
            try:
                self.cache.save(data, ref.version)
            except OSError as exc:  # serving goes on; only a future cold start loses
                log.warning("could not write the model cache at %s: %s", self.cache.directory, exc)

    def _record(self, outcome: RefreshOutcome) -> None:
        previous = self.last_outcome
        self.last_outcome = outcome
        self.metrics.refresh_duration.observe(outcome.duration_seconds)
        if outcome.ok:
            self.metrics.fallback.set(0)
            self.metrics.last_success.set(time.time())
            if previous is None or not previous.ok:
                log.info("registry confirmed: version %s, fallback mode off", outcome.version)
            return
        assert outcome.reason is not None  # noqa: S101  failures carry a reason (for mypy)
        self.metrics.fallback.set(1)
        self.metrics.refresh_failures.labels(outcome.reason).inc()
        current = self.store.current
        serving = f"{current.source} {current.version}" if current else "nothing"
        if outcome.reason == "artifact_rejected":
            log.error("artifact of version %s rejected: %s", outcome.version, outcome.detail)
        elif previous is None or previous.ok or previous.reason != outcome.reason:
            log.warning(
                "refresh failed (%s): %s; fallback mode on, serving %s",
                outcome.reason,
                outcome.detail,
                serving,
            )
        else:
            log.debug("refresh still failing (%s): %s", outcome.reason, outcome.detail)


def _failure(reason: str, version: str | None, detail: str) -> RefreshOutcome:
    return RefreshOutcome(False, reason, version, False, detail, 0.0)
