"""The images' build recipes agree with what tests/containers runs: one hash-pinned lock per image,
installed by its Dockerfile, base images pinned by exact version, and a harness image without
the local stack's heavy dependencies."""

from __future__ import annotations

import re
import tomllib

import pytest
from images import IMAGES, Image
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

HEAVY = ("mlflow", "mlflow-skinny", "pandas", "scikit-learn", "scipy", "pyarrow")


def _pins(image: Image) -> dict[str, str]:
    text = image.lock.read_text(encoding="utf-8")
    return dict(re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", text, flags=re.M))


@pytest.mark.parametrize("image", IMAGES.values(), ids=lambda i: i.repository.rsplit("/", 1)[1])
def test_dockerfile_installs_its_hash_pinned_lock(image: Image) -> None:
    assert image.lock.exists(), f"{image.lock} is missing: compile it (command in the Dockerfile)"
    text = image.lock.read_text(encoding="utf-8")
    pinned = len(_pins(image))
    hashed = len(re.findall(r"^[A-Za-z0-9_.\-]+==\S+ \\\n\s+--hash=sha256:", text, flags=re.M))
    assert pinned and hashed == pinned, f"{image.lock}: {pinned} pins, {hashed} with hashes"
    dockerfile = image.dockerfile.read_text(encoding="utf-8")
    copies = re.findall(r"^COPY\s+(\S*requirements\.lock)\s", dockerfile, flags=re.M)
    assert copies, f"{image.dockerfile} does not COPY its requirements.lock"
    installs = [line for line in image.config().installs if "requirements.lock" in line]
    assert any("--require-hashes" in line for line in installs), (
        f"{image.dockerfile}: no `pip install --require-hashes -r ...requirements.lock`"
    )


@pytest.mark.parametrize("image", IMAGES.values(), ids=lambda i: i.repository.rsplit("/", 1)[1])
def test_base_images_are_pinned_by_exact_version(image: Image) -> None:
    text = image.dockerfile.read_text(encoding="utf-8")
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, flags=re.M))
    for base in re.findall(r"^FROM\s+(\S+)", text, flags=re.M):
        base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), base)
        if base in {"scratch"} or re.fullmatch(r"[a-z]+", base):  # an earlier stage's name
            continue
        tag = base.split("@")[0].rsplit(":", 1)[-1]
        assert re.match(r"v?\d+\.\d+\.\d+", tag), f"{image.dockerfile}: FROM {base} floats"


def test_harness_lock_is_slim() -> None:
    pins = _pins(IMAGES["ghcr.io/helius/helius-harness"])
    heavy = sorted(p for p in pins if p.lower() in HEAVY)
    assert not heavy, f"the harness image would carry {heavy}"
    for needed in ("locust", "kubernetes", "prometheus-client"):
        assert needed in pins, f"harness lock lacks {needed}"


def test_mlflow_lock_has_what_the_server_arguments_need() -> None:
    """mlflow.yaml passes --expose-prometheus (prometheus_flask_exporter) and a
    postgresql+psycopg2 backend store and S3 artifacts."""
    pins = _pins(IMAGES["ghcr.io/helius/mlflow-server"])
    for needed in ("mlflow", "prometheus-flask-exporter", "psycopg2-binary", "boto3"):
        assert needed in pins, f"the MLflow image lacks {needed}"


def _inputs(image: Image) -> list[str]:
    """What the lock was compiled from: requirements.in beside it, else the pyproject's
    dependencies (service/)."""
    source = image.lock.with_suffix(".in")
    if source.exists():
        lines = source.read_text(encoding="utf-8").splitlines()
        return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]
    pyproject = tomllib.loads((image.lock.parent / "pyproject.toml").read_text(encoding="utf-8"))
    return list(pyproject["project"]["dependencies"])


@pytest.mark.parametrize("image", IMAGES.values(), ids=lambda i: i.repository.rsplit("/", 1)[1])
def test_lock_satisfies_what_it_was_compiled_from(image: Image) -> None:
    """A requirement added (or a pin moved) without recompiling the lock fails here, with the
    command to run in the lock's header."""
    pins = {canonicalize_name(k): Version(v) for k, v in _pins(image).items()}
    stale = []
    for line in _inputs(image):
        requirement = Requirement(line)
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None or not requirement.specifier.contains(pinned, prereleases=True):
            stale.append(f"{line} (lock: {pinned})")
    assert not stale, f"{image.lock} is stale, recompile it: {stale}"
