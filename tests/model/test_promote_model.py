"""promote_model against the MLflow REST stub (mlflow_stub.py), judged by the service's own
artifact loader (helius_reco.model.artifact.decode): the promoted artifact is one the service
accepts, its digest is the one the service computes, and it recommends what the old one did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helius_reco.model.artifact import artifact_digest, decode
from support.mlflow_stub import ARTIFACT_FILE, serve_registry, small_artifact

from chaoshelius import windows
from chaoshelius.exceptions import TargetError
from chaoshelius.model.actions import PROMOTIONS, promote_model
from chaoshelius.model.derive import derive, scale_factor


def _config(url: str, tmp_path: Path) -> dict[str, Any]:
    return {"helius_mlflow_url": url, "helius_run_dir": str(tmp_path)}


def test_promotion_registers_an_artifact_the_service_loads_under_the_digest_it_computes(
    tmp_path: Path,
) -> None:
    window = windows.open_window(tmp_path, "partition", "reco-mlflow")
    with serve_registry() as (registry, url):
        result = promote_model(configuration=_config(url, tmp_path))
        assert result["from_version"] == "1" and result["to_version"] == "2"
        assert result["seed"] == 1001  # 1000 + the version it replaces
        assert registry.current() == "2"
        source = registry.versions["2"]["source"]
        assert source.startswith("mlflow-artifacts:/1/") and source.endswith("/model")
        stored = registry.files[f"{source.removeprefix('mlflow-artifacts:/')}/{ARTIFACT_FILE}"]
    old, new = decode(small_artifact()), decode(stored)
    assert result["digest"] == artifact_digest(stored) == new.artifact_digest
    assert result["digest"] == registry.digest("2") != old.artifact_digest
    scaled = (old.neighbor_scores.astype(np.float64) * scale_factor(1001)).astype(np.float32)
    assert (new.neighbor_scores == scaled).all()  # in double, rounded to float32 once
    for user in ("u0", "u1", "unknown"):
        ranked = [item for item, _ in new.recommend(user, 3).items]
        assert ranked == [item for item, _ in old.recommend(user, 3).items]
    noted = windows.find_window(window_id=window.id)
    assert noted is not None and noted.details[PROMOTIONS][0]["ok"] is True
    assert noted.details[PROMOTIONS][0]["digest"] == result["digest"]


def test_the_derived_artifact_depends_on_the_seed_only() -> None:
    artifact = small_artifact()
    assert derive(artifact, 7) == derive(artifact, 7)
    assert artifact_digest(derive(artifact, 7)) != artifact_digest(derive(artifact, 8))
    decode(derive(artifact, 49))  # the largest factor (1.50) is still accepted


def test_a_failed_promotion_is_noted_on_the_open_windows(tmp_path: Path) -> None:
    window = windows.open_window(tmp_path, "partition", "reco-mlflow")
    with serve_registry(artifact=b"not a zip") as (registry, url):
        with pytest.raises(TargetError, match="not a readable .npz"):
            promote_model(configuration=_config(url, tmp_path))
        assert registry.current() == "1" and not registry.promoted
    noted = windows.find_window(window_id=window.id)
    assert noted is not None and noted.details[PROMOTIONS][0]["ok"] is False
