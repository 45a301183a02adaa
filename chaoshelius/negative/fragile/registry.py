"""The model users were served: an alias cached too long, a label that moves alone, downgrades to
the packaged baseline, a cache never read back."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from fastapi import FastAPI
from helius_reco.lifecycle.refresher import RefreshOutcome
from helius_reco.lifecycle.registry import ModelRef, ModelRegistry
from helius_reco.lifecycle.store import BASELINE_VERSION, ModelSource, ServedModel
from helius_reco.main import create_app
from helius_reco.model.recommender import RecoModel
from helius_reco.model.training import load_baseline

from chaoshelius.negative.fragile._base import _components, _wrap_record

ALIAS_CACHE_SECONDS = 600.0


@dataclasses.dataclass
class _CachedAlias:
    """A registry whose alias lookups are cached for 10 minutes "to spare the registry"."""

    inner: ModelRegistry
    ttl_seconds: float
    _ref: ModelRef | None = None
    _at: float = 0.0

    def resolve(self) -> ModelRef:
        if self._ref is None or time.monotonic() - self._at > self.ttl_seconds:
            self._ref = self.inner.resolve()
            self._at = time.monotonic()
        return self._ref

    def fetch(self, ref: ModelRef) -> bytes:
        return self.inner.fetch(ref)


def alias_cached_app() -> FastAPI:
    """The alias is resolved once and cached for 10 minutes: a model promoted meanwhile never
    reaches the pods (and they never notice the registry is gone). Caught by
    `models_converged_within` in model-promoted-during-partition."""
    app = create_app()
    refresher = _components(app).refresher
    if refresher.model_registry is not None:
        refresher.model_registry = _CachedAlias(refresher.model_registry, ALIAS_CACHE_SECONDS)
    return app


def label_only_app() -> FastAPI:
    """A promotion moves the version label but not the model: once a pod serves a registry
    model, a new version of the alias is "applied" by relabelling the model in memory ("the
    artifacts are the same, skip the download"). Every metric and answer says the new version;
    the answers' digest stays the old one. Caught by `promoted_model_served_within` in
    model-promoted-during-partition (`models_converged_within` reads only the label)."""
    app = create_app()
    refresher = _components(app).refresher
    original = refresher._serve

    def serve(ref: ModelRef, data: bytes, model: RecoModel) -> None:
        current = refresher.store.current
        if current is None or current.source != ModelSource.REGISTRY:
            original(ref, data, model)
            return
        refresher.store.swap(dataclasses.replace(current, version=ref.version))
        refresher.metrics.set_model(ref.version, ModelSource.REGISTRY)

    refresher._serve = serve  # type: ignore[method-assign]
    return app


def baseline_on_failure_app() -> FastAPI:
    """On the first failed refresh the pod swaps to the packaged baseline ("never serve a model
    the registry no longer vouches for") although it had a good model in memory, until the
    registry answers again. Its fallback gauge says so; the clients get the popularity list.
    Caught by `no_pod_downgraded` in rds-path-cut."""
    app = create_app()
    refresher = _components(app).refresher
    baseline = load_baseline()

    def downgrade(outcome: RefreshOutcome) -> None:
        if not outcome.ok:
            _swap_to_baseline(refresher, baseline)

    _wrap_record(app, downgrade)
    return app


def ignores_cache_app() -> FastAPI:
    """A pod starts from the packaged baseline whatever its on-disk cache holds (the cache is
    written, never read back: "a fresh pod should not trust the disk"), so a replacement
    started while the registry is gone serves the popularity list until it is back. Caught by
    `replacement_served_cache` in reco-cold-start-during-outage."""
    app = create_app()
    refresher = _components(app).refresher
    original = refresher.load_local

    def load_local() -> ServedModel:
        cache, refresher.cache = refresher.cache, None
        try:
            return original()
        finally:
            refresher.cache = cache

    refresher.load_local = load_local  # type: ignore[method-assign]
    return app


def baseline_until_alias_moves_app() -> FastAPI:
    """On the first failed refresh the pod swaps to the packaged baseline ("never serve a model
    the registry no longer vouches for"), and once the registry answers again it reloads only
    when the alias points at a version other than the last one it saw ("nothing new
    published, nothing to download"). After an outage the alias has not moved, so the pod stays
    on the baseline for good: its fallback gauge clears, its refreshes succeed, and it serves
    the popularity list until the next promotion. Caught by `models_converged_within` in
    mlflow-outage (every pod on the registry's model after the outage)."""
    app = create_app()
    refresher = _components(app).refresher
    baseline = load_baseline()
    seen: dict[str, str] = {}  # the alias's version at the last refresh that resolved it
    work = refresher._work

    def downgrade(outcome: RefreshOutcome) -> None:
        if outcome.version is not None:
            seen["version"] = outcome.version
        if not outcome.ok:
            _swap_to_baseline(refresher, baseline)

    def reload_only_if_moved(
        registry: ModelRegistry, attempt: Any, current: ServedModel | None
    ) -> None:
        last = seen.get("version")
        if current is not None and current.source == ModelSource.BASELINE and last is not None:
            # the mistake: compared with the last version seen, not with the one served
            current = dataclasses.replace(current, version=last, source=ModelSource.REGISTRY)
        work(registry, attempt, current)

    _wrap_record(app, downgrade)
    refresher._work = reload_only_if_moved  # type: ignore[method-assign]
    return app


def _swap_to_baseline(refresher: Any, baseline: RecoModel) -> None:
    """Serve the packaged baseline from now on, unless already on it."""
    current = refresher.store.current
    if current is not None and current.source != ModelSource.BASELINE:
        served = ServedModel(
            baseline, BASELINE_VERSION, ModelSource.BASELINE, baseline.fingerprint()
        )
        refresher.store.swap(served)
        refresher.metrics.set_model(served.version, served.source)
