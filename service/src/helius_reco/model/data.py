"""A deterministic synthetic implicit-feedback data set (who interacted with what).

Shape (defaults): 2,000 users `u0000`..`u1999`, 500 items `i0000`..`i0499` in 10 genres.
Each user likes 1-2 genres and has 5-40 distinct interactions: 80 % drawn from the liked genres
and 20 % from the whole catalogue, both weighted by a Zipf-like item popularity (exponent 1.1),
so there are head items, a long tail and genre structure for co-occurrence to find.
Same seed -> byte-identical arrays, on any machine (numpy's PCG64 stream).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

DEFAULT_SEED = 20261125


@dataclass(frozen=True)
class DatasetSpec:
    """Parameters of the synthetic data set; the defaults are what the service is trained on."""

    n_users: int = 2000
    n_items: int = 500
    n_genres: int = 10
    min_interactions: int = 5
    max_interactions: int = 40
    in_genre_share: float = 0.8
    zipf_exponent: float = 1.1
    seed: int = DEFAULT_SEED


@dataclass(frozen=True)
class Dataset:
    """Unique (user, item) interaction pairs plus the id vocabularies."""

    user_ids: npt.NDArray[np.str_]
    item_ids: npt.NDArray[np.str_]
    users: npt.NDArray[np.int32]  # row index into user_ids, one per interaction
    items: npt.NDArray[np.int32]  # row index into item_ids, one per interaction


def user_id(index: int) -> str:
    return f"u{index:04d}"


def item_id(index: int) -> str:
    return f"i{index:04d}"


def generate(spec: DatasetSpec | None = None) -> Dataset:
    """Build the data set described by `spec` (deterministic in `spec.seed`)."""
    spec = spec or DatasetSpec()
    rng = np.random.default_rng(spec.seed)
    item_genre = rng.integers(0, spec.n_genres, size=spec.n_items)
    ranks = rng.permutation(spec.n_items) + 1
    weight = 1.0 / ranks.astype(np.float64) ** spec.zipf_exponent
    global_p = weight / weight.sum()
    users: list[npt.NDArray[np.int32]] = []
    items: list[npt.NDArray[np.int32]] = []
    for u in range(spec.n_users):
        liked = rng.choice(spec.n_genres, size=int(rng.integers(1, 3)), replace=False)
        in_genre = np.isin(item_genre, liked)
        genre_p = np.where(in_genre, weight, 0.0)
        genre_p /= genre_p.sum()
        count = int(rng.integers(spec.min_interactions, spec.max_interactions + 1))
        n_genre = int(round(count * spec.in_genre_share))
        picks = np.concatenate(
            [
                rng.choice(spec.n_items, size=n_genre, p=genre_p),
                rng.choice(spec.n_items, size=count - n_genre, p=global_p),
            ]
        )
        unique = np.unique(picks).astype(np.int32)
        users.append(np.full(unique.size, u, dtype=np.int32))
        items.append(unique)
    return Dataset(
        user_ids=np.array([user_id(u) for u in range(spec.n_users)]),
        item_ids=np.array([item_id(i) for i in range(spec.n_items)]),
        users=np.concatenate(users),
        items=np.concatenate(items),
    )
