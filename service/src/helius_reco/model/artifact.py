"""The model artifact: one `.npz` of plain arrays, read with `allow_pickle=False`.

`decode` is the trust boundary for bytes from the registry or the disk cache: anything that
is not exactly the expected arrays, dtypes, shapes and value ranges raises `ArtifactError`.
No code in an artifact is ever run (no pickle, no object arrays, no custom classes).
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import numpy.typing as npt

from helius_reco.exceptions import ArtifactError
from helius_reco.model.recommender import FORMAT_VERSION, RecoModel

ARTIFACT_FILE = "reco.npz"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_MAX_ITEMS = 1_000_000
_MAX_NEIGHBORS = 1_000

_EXPECTED_KINDS = {
    "format_version": "i",
    "item_ids": "U",
    "popularity": "f",
    "neighbors": "i",
    "neighbor_scores": "f",
    "user_ids": "U",
    "history_indptr": "i",
    "history_indices": "i",
}


def encode(model: RecoModel) -> bytes:
    """The artifact bytes for `model` (compressed npz)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **model.arrays())  # type: ignore[arg-type]
    return buffer.getvalue()


def decode(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> RecoModel:
    """Validate and load artifact bytes; raise `ArtifactError` saying what is wrong."""
    if len(data) > max_bytes:
        raise ArtifactError(f"artifact is {len(data)} bytes, above the {max_bytes}-byte limit")
    if not data:
        raise ArtifactError("artifact is empty")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            names = set(npz.files)
            if names != set(_EXPECTED_KINDS):
                missing = sorted(set(_EXPECTED_KINDS) - names)
                extra = sorted(names - set(_EXPECTED_KINDS))
                raise ArtifactError(
                    f"artifact arrays differ: missing {missing}, unexpected {extra}"
                )
            arrays = {name: npz[name] for name in _EXPECTED_KINDS}
    except ArtifactError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, RuntimeError) as exc:
        raise ArtifactError(f"artifact is not a readable plain-data npz: {exc}") from exc
    return _build(arrays)


def _build(arrays: dict[str, npt.NDArray[np.generic]]) -> RecoModel:
    for name, kind in _EXPECTED_KINDS.items():
        if arrays[name].dtype.kind != kind:
            raise ArtifactError(f"{name}: dtype {arrays[name].dtype} is not of kind {kind!r}")
    version = arrays["format_version"]
    if version.shape != () or int(version) != FORMAT_VERSION:
        raise ArtifactError(f"format_version {version!r} is not {FORMAT_VERSION}")
    item_ids = arrays["item_ids"]
    n_items = _check_1d(item_ids, "item_ids")
    if not 0 < n_items <= _MAX_ITEMS:
        raise ArtifactError(f"item_ids: {n_items} items, expected 1..{_MAX_ITEMS}")
    if np.unique(item_ids).size != n_items:
        raise ArtifactError("item_ids: duplicates")
    popularity = arrays["popularity"]
    if popularity.shape != (n_items,):
        raise ArtifactError(f"popularity: shape {popularity.shape}, expected ({n_items},)")
    _check_scores(popularity, "popularity")
    neighbors, neighbor_scores = arrays["neighbors"], arrays["neighbor_scores"]
    if neighbors.ndim != 2 or neighbors.shape[0] != n_items or neighbors.shape[1] > _MAX_NEIGHBORS:
        raise ArtifactError(f"neighbors: shape {neighbors.shape}, expected ({n_items}, K<=1000)")
    if neighbor_scores.shape != neighbors.shape:
        raise ArtifactError(f"neighbor_scores: shape {neighbor_scores.shape} != neighbors'")
    _check_indices(neighbors, n_items, "neighbors")
    _check_scores(neighbor_scores, "neighbor_scores")
    user_ids = arrays["user_ids"]
    n_users = _check_1d(user_ids, "user_ids")
    if np.unique(user_ids).size != n_users:
        raise ArtifactError("user_ids: duplicates")
    indptr, indices = arrays["history_indptr"], arrays["history_indices"]
    if indptr.shape != (n_users + 1,):
        raise ArtifactError(f"history_indptr: shape {indptr.shape}, expected ({n_users + 1},)")
    nnz = _check_1d(indices, "history_indices")
    if indptr[0] != 0 or indptr[-1] != nnz or bool(np.any(np.diff(indptr) < 0)):
        raise ArtifactError("history_indptr: not a CSR pointer (0 .. nnz, non-decreasing)")
    _check_indices(indices, n_items, "history_indices")
    return RecoModel(
        item_ids=item_ids.astype(np.str_, copy=False),
        popularity=popularity.astype(np.float32, copy=False),
        neighbors=neighbors.astype(np.int32, copy=False),
        neighbor_scores=neighbor_scores.astype(np.float32, copy=False),
        user_ids=user_ids.astype(np.str_, copy=False),
        history_indptr=indptr.astype(np.int64, copy=False),
        history_indices=indices.astype(np.int32, copy=False),
    )


def _check_1d(array: npt.NDArray[np.generic], name: str) -> int:
    if array.ndim != 1:
        raise ArtifactError(f"{name}: {array.ndim} dimensions, expected 1")
    return int(array.shape[0])


def _check_indices(array: npt.NDArray[np.generic], bound: int, name: str) -> None:
    if array.size and (int(array.min()) < 0 or int(array.max()) >= bound):
        raise ArtifactError(f"{name}: index out of range 0..{bound - 1}")


def _check_scores(array: npt.NDArray[np.generic], name: str) -> None:
    values = array.astype(np.float64)
    if not bool(np.all(np.isfinite(values))) or bool(np.any(values < 0)):
        raise ArtifactError(f"{name}: values must be finite and >= 0")
