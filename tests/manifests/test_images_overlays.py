"""The overlays' `images:` blocks: every image this project builds runs from the block, every
other image in a render is a known upstream one, and a user's edit of the block (their
registry, a tag or a digest) reaches every container, init containers included."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_paths import MANIFESTS, OVERLAYS, render

from chaoshelius.images import BASE_REGISTRY, IMAGES

# what the project does not build (pinned by tag; checked by test_k8s_policy)
UPSTREAM = {"grafana/grafana", "prom/prometheus", "minio/minio", "minio/mc", "postgres"}
OURS = {i.name for i in IMAGES}


def _images(objects: list[dict[str, Any]]) -> dict[str, set[str]]:
    """image -> the objects/containers running it, over every pod template of the render."""
    found: dict[str, set[str]] = {}
    for obj in objects:
        spec = obj.get("spec") or {}
        template = (spec.get("jobTemplate") or {}).get("spec", spec).get("template") or {}
        pod = template.get("spec") or {}
        for c in pod.get("initContainers", []) + pod.get("containers", []):
            where = f"{obj['kind']}/{obj['metadata']['name']}:{c['name']}"
            found.setdefault(c["image"], set()).add(where)
    return found


def _repository(image: str) -> str:
    return image.split("@", 1)[0].rsplit(":", 1)[0] if "/" in image else image.split(":")[0]


def _block(overlay: Path) -> list[dict[str, str]]:
    block: list[dict[str, str]] = yaml.safe_load((overlay / "kustomization.yaml").read_text())[
        "images"
    ]
    return block


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_image_of_ours_runs_from_the_overlays_images_block(
    overlay: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    block = _block(MANIFESTS / "overlays" / overlay)
    assert sorted(e["name"] for e in block) == sorted(i.base_ref for i in IMAGES)
    for entry in block:
        assert entry["newName"].rsplit("/", 1)[1] == entry["name"].rsplit("/", 1)[1], entry
    from_block = {f"{e['newName']}:{e['newTag']}" for e in block}
    images = _images(rendered[overlay])
    ours = {i for i in images if _repository(i) not in UPSTREAM}
    assert ours == from_block, {i: sorted(images[i]) for i in ours ^ from_block if i in images}
    assert {_repository(i) for i in images} - {_repository(i) for i in ours} <= UPSTREAM
    # each of the three is used, by the containers that need it
    by_name = {_repository(i).rsplit("/", 1)[1]: where for i, where in images.items() if i in ours}
    assert set(by_name) == OURS
    assert any(w.startswith("Deployment/helius-reco:") for w in by_name["helius-reco-service"])
    assert any(w.startswith("Deployment/mlflow:") for w in by_name["mlflow-server"])
    assert any(w.startswith("Deployment/loadgen-worker:") for w in by_name["helius-harness"])


def test_aws_points_at_a_registry_that_is_not_the_projects(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    assert not [i for i in _images(rendered["aws"]) if i.startswith(f"{BASE_REGISTRY}/")]


def test_the_images_build_default_tags_are_the_bases() -> None:
    """`chaoshelius images build` without --tag tags what manifests/base names."""
    # the harness image is in the opt-in component (manifests/components/chaos-harness)
    component = [
        doc
        for path in sorted((MANIFESTS / "components" / "chaos-harness").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") != "Component"
    ]
    base = {_repository(i): i for i in _images(render(MANIFESTS / "base") + component)}
    for image in IMAGES:
        assert base[image.base_ref] == f"{image.base_ref}:{image.default_tag}"


def test_a_users_images_block_retargets_every_container(tmp_path: Path) -> None:
    """The user's edit: their registry with a tag for two images and a digest for one."""
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy)
    overlay = copy / "overlays" / "aws"
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    digest = "sha256:" + "ab" * 32
    for entry in kustomization["images"]:
        name = entry["name"].rsplit("/", 1)[1]
        entry["newName"] = f"registry.example.com/team/{name}"
        if name == "mlflow-server":
            entry.pop("newTag")
            entry["digest"] = digest
        else:
            entry["newTag"] = "2026.12.07"
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    images = _images(render(overlay))
    ours = {i for i in images if _repository(i) not in UPSTREAM}
    assert ours == {
        "registry.example.com/team/helius-reco-service:2026.12.07",
        "registry.example.com/team/helius-harness:2026.12.07",
        f"registry.example.com/team/mlflow-server@{digest}",
    }
    # init containers too (MLflow's database migration runs the MLflow image)
    assert len(images[f"registry.example.com/team/mlflow-server@{digest}"]) == 2
