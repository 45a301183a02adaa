"""Shared fixtures for the service tests: the trained model, its artifact, fake registries."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helius_reco.exceptions import RegistryError
from helius_reco.lifecycle.cache import ModelCache
from helius_reco.lifecycle.refresher import Refresher
from helius_reco.lifecycle.registry import ModelRef
from helius_reco.lifecycle.store import ModelStore
from helius_reco.metrics import Metrics
from helius_reco.model.artifact import encode
from helius_reco.model.data import Dataset, DatasetSpec, generate
from helius_reco.model.recommender import RecoModel
from helius_reco.model.training import fit
from prometheus_client import CollectorRegistry


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    return generate()


@pytest.fixture(scope="session")
def model(dataset: Dataset) -> RecoModel:
    return fit(dataset)


@pytest.fixture(scope="session")
def artifact(model: RecoModel) -> bytes:
    return encode(model)


@pytest.fixture(scope="session")
def other_artifact() -> bytes:
    """A second, different valid model (another seed): what a new registry version holds."""
    return encode(fit(generate(DatasetSpec(seed=7))))


@dataclass
class FakeRegistry:
    """A registry whose behaviour the test sets: serve versions, fail, hang or serve junk."""

    versions: dict[str, bytes] = field(default_factory=dict)
    alias: str | None = None
    failure: RegistryError | None = None
    hang: threading.Event | None = None  # when set to an Event, calls block until it is set
    resolve_calls: int = 0
    fetch_calls: int = 0

    def publish(self, version: str, data: bytes) -> None:
        self.versions[version] = data
        self.alias = version

    def resolve(self) -> ModelRef:
        self.resolve_calls += 1
        self._maybe_block_or_fail()
        if self.alias is None:
            raise RegistryError("alias not found", reason="not_found")
        return ModelRef(self.alias, f"fake:/{self.alias}")

    def fetch(self, ref: ModelRef) -> bytes:
        self.fetch_calls += 1
        self._maybe_block_or_fail()
        return self.versions[ref.version]

    def _maybe_block_or_fail(self) -> None:
        if self.hang is not None:
            self.hang.wait(30)
        if self.failure is not None:
            raise self.failure


@pytest.fixture
def fake_registry() -> Iterator[FakeRegistry]:
    fake = FakeRegistry()
    yield fake
    if fake.hang is not None:
        fake.hang.set()  # release abandoned worker threads


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


RefresherFactory = Callable[..., Refresher]


@pytest.fixture
def make_refresher(
    fake_registry: FakeRegistry, metrics: Metrics, tmp_path: Path
) -> Iterator[RefresherFactory]:
    made: list[Refresher] = []

    def make(**overrides: object) -> Refresher:
        options: dict[str, object] = {
            "interval_seconds": 0.05,
            "deadline_seconds": 1.0,
            "max_hung": 2,
        }
        options.update(overrides)
        registry = options.pop("model_registry", fake_registry)
        refresher = Refresher(
            ModelStore(),
            registry,  # type: ignore[arg-type]
            ModelCache(tmp_path / "cache"),
            metrics,
            **options,  # type: ignore[arg-type]
        )
        made.append(refresher)
        return refresher

    yield make
    for refresher in made:
        refresher.stop(timeout=2)
