"""The loader is the trust boundary: corrupt, missing and wrong-shape artifacts are rejected."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from helius_reco.exceptions import ArtifactError
from helius_reco.lifecycle.cache import ModelCache
from helius_reco.model.artifact import decode


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _arrays(model) -> dict[str, np.ndarray]:
    return dict(model.arrays())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"not a zip at all" * 10, "not a readable"),
        (b"PK\x03\x04" + b"\x00" * 100, "not a readable"),
    ],
)
def test_garbage_is_rejected(data: bytes, message: str) -> None:
    with pytest.raises(ArtifactError, match=message):
        decode(data)


def test_truncated_artifact_is_rejected(artifact: bytes) -> None:
    with pytest.raises(ArtifactError):
        decode(artifact[: len(artifact) // 2])


def test_oversized_artifact_is_rejected_before_parsing(artifact: bytes) -> None:
    with pytest.raises(ArtifactError, match="limit"):
        decode(artifact, max_bytes=1000)


def test_missing_array(model) -> None:
    arrays = _arrays(model)
    del arrays["popularity"]
    with pytest.raises(ArtifactError, match="missing \\['popularity'\\]"):
        decode(_npz(arrays))


def test_unexpected_array(model) -> None:
    arrays = _arrays(model) | {"extra": np.zeros(3)}
    with pytest.raises(ArtifactError, match="unexpected \\['extra'\\]"):
        decode(_npz(arrays))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("popularity", np.ones(499, dtype=np.float32), "popularity: shape"),
        ("popularity", np.full(500, np.nan, dtype=np.float32), "finite"),
        ("neighbor_scores", -np.ones((500, 30), dtype=np.float32), "finite and >= 0"),
        ("neighbors", np.full((500, 30), 500, dtype=np.int32), "out of range"),
        ("neighbors", np.zeros((500, 29), dtype=np.int32), "neighbor_scores: shape"),
        ("item_ids", np.arange(500), "dtype"),
        ("item_ids", np.array(["same"] * 500), "duplicates"),
        ("history_indptr", np.zeros(5, dtype=np.int64), "history_indptr: shape"),
        ("format_version", np.array(2), "format_version"),
    ],
)
def test_wrong_shape_dtype_or_values(model, name: str, value: np.ndarray, message: str) -> None:
    arrays = _arrays(model) | {name: value}
    with pytest.raises(ArtifactError, match=message):
        decode(_npz(arrays))


def test_non_monotonic_csr_pointer(model) -> None:
    arrays = _arrays(model)
    indptr = arrays["history_indptr"].copy()
    indptr[5], indptr[6] = indptr[6], indptr[5] - 1
    with pytest.raises(ArtifactError, match="CSR"):
        decode(_npz(arrays | {"history_indptr": indptr}))


class _Boom:
    """Unpickling this would create a file: proof that no code runs on load."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(self.path),))


def test_pickled_object_arrays_are_refused_and_never_run(model, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    hostile = np.empty(1, dtype=object)
    hostile[0] = _Boom(str(marker))
    with pytest.raises(ArtifactError):
        decode(_npz(_arrays(model) | {"item_ids": hostile}))
    with pytest.raises(ArtifactError):
        decode(pickle.dumps(_Boom(str(marker))))
    assert not marker.exists()


def test_cache_round_trip(tmp_path: Path, artifact: bytes, model) -> None:
    cache = ModelCache(tmp_path / "c")
    assert cache.load() is None
    cache.save(artifact, "7")
    cached = cache.load()
    assert cached is not None and cached.version == "7"
    assert cached.model.fingerprint() == model.fingerprint()


def test_tampered_cache_is_rejected(tmp_path: Path, artifact: bytes, other_artifact: bytes) -> None:
    cache = ModelCache(tmp_path)
    cache.save(artifact, "7")
    cache.artifact_path.write_bytes(other_artifact)  # valid npz, but not the one recorded
    with pytest.raises(ArtifactError, match="sha256"):
        cache.load()


@pytest.mark.parametrize("meta", ["{not json", '["a list"]', '{"version": 7}'])
def test_malformed_cache_metadata_is_rejected(tmp_path: Path, artifact: bytes, meta: str) -> None:
    cache = ModelCache(tmp_path)
    cache.save(artifact, "7")
    cache.meta_path.write_text(meta)
    with pytest.raises(ArtifactError):
        cache.load()


def test_cache_with_missing_half_is_rejected(tmp_path: Path, artifact: bytes) -> None:
    cache = ModelCache(tmp_path)
    cache.save(artifact, "7")
    cache.artifact_path.unlink()
    with pytest.raises(ArtifactError, match="unreadable"):
        cache.load()
