"""Fit the co-occurrence model, and the popularity-only baseline shipped with the package."""

from __future__ import annotations

from importlib import resources

import numpy as np

from helius_reco.model.artifact import decode
from helius_reco.model.data import Dataset
from helius_reco.model.recommender import RecoModel

DEFAULT_NEIGHBORS = 30
BASELINE_RESOURCE = "baseline.npz"


def fit(data: Dataset, *, k: int = DEFAULT_NEIGHBORS) -> RecoModel:
    """Cosine-normalised item co-occurrence, top-`k` neighbours per item, plus popularity."""
    n_users, n_items = data.user_ids.size, data.item_ids.size
    matrix = np.zeros((n_users, n_items), dtype=np.float32)
    matrix[data.users, data.items] = 1.0
    counts = matrix.sum(axis=0)
    cooc = matrix.T @ matrix
    np.fill_diagonal(cooc, 0.0)
    norm = np.sqrt(np.maximum(counts, 1.0))
    similarity = cooc / norm[:, None] / norm[None, :]
    k = min(k, n_items - 1)
    # stable sort of -similarity: deterministic neighbour order, ties by item index
    neighbors = np.argsort(-similarity, axis=1, kind="stable")[:, :k].astype(np.int32)
    neighbor_scores = np.take_along_axis(similarity, neighbors, axis=1).astype(np.float32)
    order = np.lexsort((data.items, data.users))
    users, items = data.users[order], data.items[order]
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    return RecoModel(
        item_ids=data.item_ids,
        popularity=counts.astype(np.float32),
        neighbors=neighbors,
        neighbor_scores=neighbor_scores,
        user_ids=data.user_ids,
        history_indptr=indptr,
        history_indices=items.astype(np.int32),
    )


def fit_baseline(data: Dataset) -> RecoModel:
    """Popularity only, no users: what a cold start with no registry and no cache serves."""
    counts = np.bincount(data.items, minlength=data.item_ids.size).astype(np.float32)
    return RecoModel(
        item_ids=data.item_ids,
        popularity=counts,
        neighbors=np.zeros((data.item_ids.size, 0), dtype=np.int32),
        neighbor_scores=np.zeros((data.item_ids.size, 0), dtype=np.float32),
        user_ids=np.array([], dtype="<U1"),
        history_indptr=np.zeros(1, dtype=np.int64),
        history_indices=np.zeros(0, dtype=np.int32),
    )


def load_baseline() -> RecoModel:
    """The baseline artifact shipped in the package (validated like any other artifact)."""
    data = resources.files("helius_reco.model").joinpath("baseline", BASELINE_RESOURCE)
    return decode(data.read_bytes())
