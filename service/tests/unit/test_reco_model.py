"""The synthetic data set, training, scoring and the shipped baseline."""

from __future__ import annotations

import numpy as np
import pytest
from helius_reco.model.artifact import decode, encode
from helius_reco.model.data import DatasetSpec, generate
from helius_reco.model.training import fit, fit_baseline, load_baseline


def test_dataset_is_deterministic_and_has_the_documented_shape(dataset) -> None:
    again = generate()
    assert np.array_equal(dataset.users, again.users)
    assert np.array_equal(dataset.items, again.items)
    assert dataset.user_ids.size == 2000 and dataset.item_ids.size == 500
    assert dataset.user_ids[0] == "u0000" and dataset.item_ids[-1] == "i0499"
    per_user = np.bincount(dataset.users, minlength=2000)
    assert per_user.min() >= 1 and per_user.max() <= 40
    pairs = dataset.users.astype(np.int64) * 1000 + dataset.items
    assert np.unique(pairs).size == pairs.size  # unique (user, item) pairs
    other = generate(DatasetSpec(seed=1))
    assert not np.array_equal(dataset.items, other.items)


def test_popularity_is_skewed(dataset) -> None:
    counts = np.sort(np.bincount(dataset.items, minlength=500))[::-1]
    assert counts[:50].sum() > 0.3 * counts.sum()  # a head ...
    assert (counts > 0).sum() > 400  # ... and a long tail


def test_known_user_gets_unseen_ranked_items(model) -> None:
    history = set(model.history("u0001"))
    reco = model.recommend("u0001", 10)
    ids = [item for item, _ in reco.items]
    scores = [score for _, score in reco.items]
    assert reco.known_user
    assert len(ids) == 10 and len(set(ids)) == 10
    assert not history & set(ids)
    assert scores == sorted(scores, reverse=True)


def test_exclude_is_honoured_and_unknown_excludes_ignored(model) -> None:
    first = [item for item, _ in model.recommend("u0001", 5).items]
    second = model.recommend("u0001", 5, exclude=[*first, "nope"])
    assert not set(first) & {item for item, _ in second.items}
    assert len(second.items) == 5


def test_unknown_user_gets_popular_items(model, dataset) -> None:
    reco = model.recommend("x-never-seen", 5)
    assert not reco.known_user
    counts = np.bincount(dataset.items, minlength=500)
    top = {f"i{i:04d}" for i in np.argsort(-counts, kind="stable")[:5]}
    assert {item for item, _ in reco.items} == top


def test_k_larger_than_catalogue_returns_every_unseen_item(model) -> None:
    reco = model.recommend("u0001", 10_000)
    assert len(reco.items) == model.n_items - len(model.history("u0001"))


def test_cooccurrence_beats_popularity_on_held_out_items(dataset) -> None:
    """Leave one item out per user: the model must find it more often than popularity."""
    rng = np.random.default_rng(0)
    users = rng.choice(2000, size=300, replace=False)
    keep = np.ones(dataset.users.size, dtype=bool)
    held: dict[int, int] = {}
    for user in users:
        rows = np.flatnonzero(dataset.users == user)
        if rows.size >= 3:
            row = int(rng.choice(rows))
            keep[row] = False
            held[int(user)] = int(dataset.items[row])
    train = type(dataset)(
        dataset.user_ids, dataset.item_ids, dataset.users[keep], dataset.items[keep]
    )
    model, baseline = fit(train), fit_baseline(train)

    def hits(m) -> int:
        return sum(
            f"i{item:04d}" in {i for i, _ in m.recommend(f"u{user:04d}", 20).items}
            for user, item in held.items()
        )

    assert hits(model) > 1.5 * hits(baseline)


def test_artifact_round_trip_keeps_the_model(model) -> None:
    loaded = decode(encode(model))
    assert loaded.fingerprint() == model.fingerprint()
    assert loaded.recommend("u0042", 7) == model.recommend("u0042", 7)


def test_shipped_baseline_is_the_one_the_trainer_builds(dataset) -> None:
    shipped = load_baseline()
    assert shipped.fingerprint() == fit_baseline(dataset).fingerprint(), (
        "regenerate: python -m helius_reco.train --write-baseline "
        "service/src/helius_reco/model/baseline/baseline.npz"
    )
    assert shipped.n_users == 0 and shipped.n_items == 500


@pytest.mark.parametrize("k", [1, 10, 100])
def test_baseline_serves_any_user(k: int) -> None:
    reco = load_baseline().recommend("u0001", k)
    assert len(reco.items) == k and not reco.known_user
