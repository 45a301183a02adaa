"""The model being served, swapped atomically; requests read it once and never wait."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum

from helius_reco.model.recommender import RecoModel


class ModelSource(StrEnum):
    REGISTRY = "registry"
    CACHE = "cache"
    BASELINE = "baseline"


BASELINE_VERSION = "baseline"


@dataclass(frozen=True)
class ServedModel:
    model: RecoModel
    version: str
    source: ModelSource
    fingerprint: str
    loaded_at: float = field(default_factory=time.time)


class ModelStore:
    """Holds one `ServedModel`. Readers take `current` (one attribute read, no lock);
    writers swap under a lock so two writers cannot interleave."""

    def __init__(self) -> None:
        self._current: ServedModel | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> ServedModel | None:
        return self._current

    def swap(self, served: ServedModel) -> ServedModel | None:
        """Serve `served` from now on; return what was served before."""
        with self._lock:
            previous, self._current = self._current, served
        return previous
