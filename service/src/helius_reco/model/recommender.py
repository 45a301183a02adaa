"""Item co-occurrence + popularity scoring over a model held in plain numpy arrays."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FORMAT_VERSION = 1
POPULARITY_WEIGHT = 0.1  # share of the popularity prior in a known user's score
RANKED_PER_USER = 128  # best items kept per training user once they have been ranked
MAX_USERS_KEPT_RANKED = 10_000  # above: rank on every request (the table would be too big)
# neighbour entries summed per step of a ranking: bounds its temporaries (~1 MiB) whatever the
# user's history, and gives other threads the interpreter between steps
SCORING_CHUNK = 65_536
DIGEST_CHARS = 12  # hex characters of an artifact's sha256 an answer names its model by
_IndexArray = npt.NDArray[np.intp]
_ScoreArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Recommendation:
    """Ranked (item id, score) pairs, best first."""

    items: list[tuple[str, float]]
    known_user: bool


@dataclass(frozen=True, eq=False)
class RecoModel:
    """An item-to-item model: for each item its top-K co-occurring neighbours, a popularity
    prior, and each training user's history (CSR). Unknown users get the popular items.

    Ranking: score descending, ties by item index, so answers are deterministic. The model is
    immutable, so rankings are kept: the popularity ranking from the start, and each training
    user's best `RANKED_PER_USER` items from their first request on (for models of up to
    `MAX_USERS_KEPT_RANKED` users: at most ~20 MB). A request then only filters and slices
    (see benchmarks/bench_predict.py for why). Requests a kept list cannot answer (long
    `exclude` lists) are ranked on the spot, identically.

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
    _weighted_prior: _ScoreArray = field(init=False, repr=False)
    _popular: tuple[_IndexArray, _ScoreArray] = field(init=False, repr=False)
    _ranked: _RankedUsers | None = field(init=False, repr=False)
    # sha256 (first DIGEST_CHARS hex) of the artifact bytes this object was decoded from, set
    # by `model.artifact.decode`: the identity of the model itself, whatever version label a
    # store gives it ("" for a model built in memory, e.g. by `fit`)
    artifact_digest: str = field(init=False, default="", compare=False)

    def __post_init__(self) -> None:
        items = [str(i) for i in self.item_ids]
        top = float(self.popularity.max()) if self.popularity.size else 0.0
        prior = self.popularity.astype(np.float64) / (top if top > 0 else 1.0)
        popular = np.argsort(-prior, kind="stable")
        object.__setattr__(self, "_item_list", items)
        object.__setattr__(self, "_item_index", {item: i for i, item in enumerate(items)})
        object.__setattr__(self, "_user_index", {str(u): i for i, u in enumerate(self.user_ids)})
        object.__setattr__(self, "_weighted_prior", POPULARITY_WEIGHT * prior)
        object.__setattr__(self, "_popular", (popular, prior[popular]))
        keep = self.n_items > 0 and self.neighbors.shape[1] > 0
        ranked = (
            _RankedUsers(self.n_users) if keep and self.n_users <= MAX_USERS_KEPT_RANKED else None
        )
        object.__setattr__(self, "_ranked", ranked)

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

    def ranking_work(self, user: str, n: int, n_exclude: int) -> int:
        """Roughly the array elements `recommend(user, n, <n_exclude ids>)` would process on
        the spot: 0 when a kept ranking answers, else the user's history x K plus the
        catalogue (what the route runs off the event loop when large)."""
        row = self._user_index.get(user)
        k = int(self.neighbors.shape[1])
        if row is None or k == 0 or self.n_items == 0:
            return 0
        if (
            self._ranked is not None
            and self._ranked.done[row]
            and min(n, self.n_items) + n_exclude <= RANKED_PER_USER
        ):
            return 0
        history = int(self.history_indptr[row + 1] - self.history_indptr[row])
        return history * k + self.n_items

    def recommend(self, user: str, n: int, exclude: Iterable[str] = ()) -> Recommendation:
        """Top-`n` items for `user`, never an item the user already has or asked to exclude."""
        row = self._user_index.get(user)
        n = min(n, self.n_items)
        if n <= 0:
            return Recommendation([], row is not None)
        excluded = {i for i in map(self._item_index.get, exclude) if i is not None}
        wanted = n + len(excluded)  # enough candidates even if every excluded one is among them
        if row is None or self.neighbors.shape[1] == 0:
            order, scores = self._popular
        elif self._ranked is not None and wanted <= RANKED_PER_USER:
            order, scores = self._ranked_row(row, self._ranked)
        else:
            all_scores = self._scores(row)
            order = _best(all_scores, wanted)
            scores = all_scores[order]
        items = self._item_list
        out = [
            (items[i], score)
            for i, score in zip(order[:wanted].tolist(), scores[:wanted].tolist(), strict=True)
            if score != -np.inf and i not in excluded
        ]
        return Recommendation(out[:n], row is not None)

    def _scores(self, row: int) -> _ScoreArray:
        """Every item's score for training user `row`; -inf for the items they already have."""
        seen = self.history_indices[self.history_indptr[row] : self.history_indptr[row + 1]]
        step = max(1, SCORING_CHUNK // max(1, self.neighbors.shape[1]))
        scores = self._neighbor_sums(seen[:step])
        for start in range(step, seen.size, step):  # long histories: in bounded steps
            scores += self._neighbor_sums(seen[start : start + step])
        top = scores.max()
        if top > 0:
            scores /= top
        scores += self._weighted_prior
        scores[seen] = -np.inf
        return scores

    def _neighbor_sums(self, items: _IndexArray | npt.NDArray[np.int32]) -> _ScoreArray:
        sums: _ScoreArray = np.bincount(
            self.neighbors[items].ravel(),
            weights=self.neighbor_scores[items].ravel(),
            minlength=self.n_items,
        )
        return sums

    def _ranked_row(self, row: int, ranked: _RankedUsers) -> tuple[_IndexArray, _ScoreArray]:
        if not ranked.done[row]:  # two threads may both rank a row: same values, no harm
            all_scores = self._scores(row)
            best = _best(all_scores, min(RANKED_PER_USER, self.n_items))
            ranked.order[row, : best.size] = best
            ranked.scores[row, : best.size] = all_scores[best]
            ranked.done[row] = 1
        return ranked.order[row], ranked.scores[row]

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


class _RankedUsers:
    """Each training user's best items and their scores (-inf pads), once ranked."""

    def __init__(self, n_users: int) -> None:
        self.order = np.zeros((n_users, RANKED_PER_USER), dtype=np.intp)
        self.scores = np.full((n_users, RANKED_PER_USER), -np.inf)
        self.done = bytearray(n_users)


def _best(scores: _ScoreArray, n: int) -> _IndexArray:
    """Indices of the `n` best scores: score descending, ties by index (exact, deterministic)."""
    if n >= scores.size:
        return np.argsort(-scores, kind="stable")
    nth = np.partition(scores, scores.size - n)[scores.size - n]  # the n-th best score
    above = np.flatnonzero(scores > nth)
    tied = np.flatnonzero(scores == nth)[: n - above.size]
    chosen = np.concatenate((above, tied))
    return chosen[np.argsort(-scores[chosen], kind="stable")]
