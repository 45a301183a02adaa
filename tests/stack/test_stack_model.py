"""Promoting a model (chaoshelius.model.actions: the champion's artifact with its scores rescaled,
through MLflow's REST API) on the real stack: the alias moves to a new version of a different
artifact, and every recommender picks it up by itself and answers from it (its digest)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from support.stack import ALIAS_PATH, StackHandle, wait_for

from chaoshelius.model.actions import promote_model
from chaoshelius.topology import MODEL_ALIAS, MODEL_NAME


def _alias_version(stack: StackHandle) -> str:
    answer = httpx.get(
        stack.mlflow_url + ALIAS_PATH, params={"name": MODEL_NAME, "alias": MODEL_ALIAS}, timeout=10
    )
    return str(answer.json()["model_version"]["version"])


def _served_versions(stack: StackHandle) -> set[str]:
    versions = set()
    for pod in stack.pods("app=helius-reco"):
        health = httpx.get(f"{pod['url']}/health", timeout=5).json()
        versions.add(str(health["model_version"]))
    return versions


def _served_digests(stack: StackHandle) -> set[str]:
    digests = set()
    for pod in stack.pods("app=helius-reco"):
        answer = httpx.post(f"{pod['url']}/predict", json={"user_id": "u0001"}, timeout=5)
        digests.add(str(answer.json()["model_digest"]))
    return digests


def test_promote_model_moves_the_alias_and_every_pod_follows(
    stack: StackHandle, tmp_path: Path
) -> None:
    before = _alias_version(stack)
    digests_before = _served_digests(stack)
    configuration = {"helius_mlflow_url": stack.mlflow_url, "helius_run_dir": str(tmp_path)}
    started = time.monotonic()
    out = promote_model(configuration=configuration)
    took = time.monotonic() - started
    print(f"promote_model took {took:.2f} s")  # noqa: T201 - the measurement, with -s
    assert took < 15, f"a promotion took {took:.1f} s (REST calls only; the trainer took ~50 s)"
    assert out["from_version"] == before
    assert int(out["to_version"]) > int(before)
    assert _alias_version(stack) == out["to_version"]
    assert out["digest"] not in digests_before  # a different artifact, not a new label
    wait_for(
        lambda: _served_versions(stack) == {out["to_version"]},
        60,
        "every recommender serves the promoted version",
    )
    assert _served_digests(stack) == {out["digest"]}


def test_promote_model_against_no_mlflow_is_a_one_line_error(tmp_path: Path) -> None:
    import pytest

    from chaoshelius.exceptions import TargetError

    with pytest.raises(TargetError, match="did not answer .* check helius_mlflow_url"):
        promote_model(
            configuration={
                "helius_mlflow_url": "http://127.0.0.1:1",
                "helius_run_dir": str(tmp_path),
            }
        )
