"""On-disk copy of the last model confirmed from the registry, for restarts with MLflow down."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from helius_reco.exceptions import ArtifactError
from helius_reco.model.artifact import (
    ARTIFACT_FILE,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DECOMPRESSED_BYTES,
    DEFAULT_MAX_HISTORY_NEIGHBORS,
    decode,
)
from helius_reco.model.recommender import RecoModel

log = logging.getLogger(__name__)
META_FILE = "meta.json"


@dataclass(frozen=True)
class CachedModel:
    model: RecoModel
    version: str
    sha256: str


class ModelCache:
    """`<dir>/reco.npz` + `<dir>/meta.json` (version, sha256 of the npz), each replaced
    atomically; a mismatch between the two (torn write, tampering) rejects the cache."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
        max_history_neighbors: int = DEFAULT_MAX_HISTORY_NEIGHBORS,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_decompressed_bytes = max_decompressed_bytes
        self.max_history_neighbors = max_history_neighbors

    @property
    def artifact_path(self) -> Path:
        return self.directory / ARTIFACT_FILE

    @property
    def meta_path(self) -> Path:
        return self.directory / META_FILE

    def save(self, data: bytes, version: str) -> None:
        """Store artifact bytes already validated by `decode`. Raises OSError on disk errors."""
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = {"version": version, "sha256": hashlib.sha256(data).hexdigest()}
        _atomic_write(self.artifact_path, data)
        _atomic_write(self.meta_path, json.dumps(meta).encode())

    def load(self) -> CachedModel | None:
        """The cached model; None if there is no cache; ArtifactError if it is unusable."""
        if not self.meta_path.exists() and not self.artifact_path.exists():
            return None
        try:
            meta = json.loads(self.meta_path.read_text())
            size = self.artifact_path.stat().st_size
            if size > self.max_bytes:  # never read a file decode would refuse anyway
                raise ArtifactError(
                    f"cache artifact {self.artifact_path} is {size} bytes, "
                    f"above the {self.max_bytes}-byte limit"
                )
            data = self.artifact_path.read_bytes()
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cache at {self.directory} is unreadable: {exc}") from exc
        if not isinstance(meta, dict) or not isinstance(meta.get("version"), str):
            raise ArtifactError(f"cache metadata {self.meta_path} is malformed")
        digest = hashlib.sha256(data).hexdigest()
        if meta.get("sha256") != digest:
            raise ArtifactError(f"cache artifact {self.artifact_path} does not match its sha256")
        model = decode(
            data,
            max_bytes=self.max_bytes,
            max_decompressed_bytes=self.max_decompressed_bytes,
            max_history_neighbors=self.max_history_neighbors,
        )
        return CachedModel(model, meta["version"], digest)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
