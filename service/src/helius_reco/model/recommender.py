"""Item co-occurrence + popularity scoring over a model held in plain numpy arrays."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FORMAT_VERSION = 1
POPULARITY_WEIGHT = 0.1  # share of the popularity prior in a known user's score


@dataclass(frozen=True, slots=True)
class Recommendation:
    """Ranked (item id, score) pairs, best first."""

    items: list[tuple[str, float]]
    known_user: bool


@dataclass(frozen=True, eq=False)
class RecoModel:
    """An item-to-item model: for each item its top-K co-occurring neighbours, a popularity
    prior, and each training user's history (CSR). Unknown users get the popular items.

    The arrays are validated by `model.artifact.decode` before one of these is built from
    untrusted bytes; the constructor only derives lookup tables.
    """

    item_ids: npt.NDArray[np.str_]  # [n_items]
    popularity: npt.NDArray[np.float32]  # [n_items], >= 0
    neighbors: npt.NDArray[np.int32]  # [n_items, K], indices into item_ids
    neighbor_scores: npt.NDArray[np.float32]  # [n_items, K], >= 0
    user_ids: npt.NDArray[np.str_]  # [n_users]
    history_indptr: npt.NDArray[np.int64]  # [n_users + 1]
    history_indices: npt.NDArray[np.int32]  # [nnz], indices into item_ids
    _item_list: list[str] = field(init=False, repr=False)
    _item_index: dict[str, int] = field(init=False, repr=False)
    _user_index: dict[str, int] = field(init=False, repr=False)
    _prior: npt.NDArray[np.float64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        items = [str(i) for i in self.item_ids]
        top = float(self.popularity.max()) if self.popularity.size else 0.0
        prior = self.popularity.astype(np.float64) / (top if top > 0 else 1.0)
        object.__setattr__(self, "_item_list", items)
        object.__setattr__(self, "_item_index", {item: i for i, item in enumerate(items)})
        object.__setattr__(self, "_user_index", {str(u): i for i, u in enumerate(self.user_ids)})
        object.__setattr__(self, "_prior", prior)

    @property
    def n_items(self) -> int:
        return len(self._item_list)

    @property
    def n_users(self) -> int:
        return len(self._user_index)

    def knows(self, user: str) -> bool:
        return user in self._user_index

    def history(self, user: str) -> list[str]:
        row = self._user_index.get(user)
        if row is None:
            return []
        lo, hi = self.history_indptr[row], self.history_indptr[row + 1]
        return [self._item_list[i] for i in self.history_indices[lo:hi]]

    def recommend(self, user: str, n: int, exclude: Iterable[str] = ()) -> Recommendation:
        """Top-`n` items for `user`, never an item the user already has or asked to exclude."""
        row = self._user_index.get(user)
        if row is None or self.neighbors.shape[1] == 0:
            scores = self._prior.copy()
            seen = np.empty(0, dtype=np.int32)
        else:
            seen = self.history_indices[self.history_indptr[row] : self.history_indptr[row + 1]]
            scores = np.bincount(
                self.neighbors[seen].ravel(),
                weights=self.neighbor_scores[seen].ravel(),
                minlength=self.n_items,
            )
            top = scores.max() if scores.size else 0.0
            if top > 0:
                scores /= top
            scores += POPULARITY_WEIGHT * self._prior
        scores[seen] = -np.inf
        for item in exclude:
            index = self._item_index.get(item)
            if index is not None:
                scores[index] = -np.inf
        n = min(n, self.n_items)
        if n <= 0:
            return Recommendation([], row is not None)
        if n < self.n_items:
            candidates = np.argpartition(-scores, n - 1)[:n]
        else:
            candidates = np.arange(self.n_items)
        ranked = candidates[np.argsort(-scores[candidates], kind="stable")]
        items = self._item_list
        out = [(items[i], float(scores[i])) for i in ranked.tolist() if scores[i] != -np.inf]
        return Recommendation(out, row is not None)

    def arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """The model as named arrays: exactly what the artifact stores."""
        return {
            "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
            "item_ids": self.item_ids,
            "popularity": self.popularity,
            "neighbors": self.neighbors,
            "neighbor_scores": self.neighbor_scores,
            "user_ids": self.user_ids,
            "history_indptr": self.history_indptr,
            "history_indices": self.history_indices,
        }

    def fingerprint(self) -> str:
        """sha256 over names, dtypes, shapes and bytes of the arrays (npz bytes carry zip
        timestamps, so they are not stable; this is)."""
        digest = hashlib.sha256()
        for name, array in sorted(self.arrays().items()):
            contiguous = np.ascontiguousarray(array)
            digest.update(f"{name}|{contiguous.dtype.str}|{contiguous.shape}|".encode())
            digest.update(contiguous.tobytes())
        return digest.hexdigest()
