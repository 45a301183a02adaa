"""The three images this project builds, as a test can run them without a container engine.

Each image's Python environment is ONE lock file, the same file its Dockerfile installs with
`pip install --require-hashes -r`: here `uv` installs it (hashes required, no resolution) into a
virtualenv cached under `$HELIUS_IMAGE_CACHE` (default `.nox/images/`), one directory per
image and sha256 of its lock, so a changed lock builds a new environment and an unchanged one is
reused. The project's own package (chaoshelius, helius_reco) is installed `--no-deps` in the
image; here it comes from the working tree through PYTHONPATH (same files, no dependency
resolution involved either way).

ENTRYPOINT, CMD and ENV are read from the Dockerfile's final stage (what a kubelet's container
runtime takes from the image config when the pod spec leaves them out).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE_ENV = "HELIUS_IMAGE_CACHE"


@dataclass(frozen=True)
class Image:
    repository: str
    dockerfile: Path
    lock: Path
    pythonpath: tuple[Path, ...]
    # paths inside the image -> the working-tree directory the Dockerfile copied there
    files: dict[str, Path] = field(default_factory=dict)

    def config(self) -> ImageConfig:
        return read_dockerfile(self.dockerfile)


IMAGES: dict[str, Image] = {
    "ghcr.io/helius/helius-reco-service": Image(
        "ghcr.io/helius/helius-reco-service",
        REPO / "service" / "Dockerfile",
        REPO / "service" / "requirements.lock",
        (REPO / "service" / "src",),
    ),
    "ghcr.io/helius/mlflow-server": Image(
        "ghcr.io/helius/mlflow-server",
        REPO / "manifests" / "images" / "mlflow" / "Dockerfile",
        REPO / "manifests" / "images" / "mlflow" / "requirements.lock",
        (),
    ),
    "ghcr.io/helius/helius-harness": Image(
        "ghcr.io/helius/helius-harness",
        REPO / "manifests" / "images" / "harness" / "Dockerfile",
        REPO / "manifests" / "images" / "harness" / "requirements.lock",
        (REPO,),
        {"/app/loadtests": REPO / "loadtests", "/app/chaoshelius": REPO / "chaoshelius"},
    ),
}


def image_of(reference: str) -> Image | None:
    """The Image for `ghcr.io/helius/NAME:TAG` (or @digest); None for an upstream image."""
    repository = re.split(r"[@]", reference)[0]
    repository = repository.rsplit(":", 1)[0] if ":" in repository.split("/")[-1] else repository
    return IMAGES.get(repository)


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: list[str] | None
    cmd: list[str] | None
    env: dict[str, str]
    workdir: str | None
    installs: list[str]  # the RUN lines that run pip


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def read_dockerfile(path: Path) -> ImageConfig:
    """The final stage's ENTRYPOINT, CMD, ENV and WORKDIR (exec form only), and pip RUN lines."""
    args: dict[str, str] = {}
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: dict[str, str] = {}
    workdir: str | None = None
    installs: list[str] = []
    for line in _logical_lines(path.read_text(encoding="utf-8")):
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "ARG" and "=" in rest:
            key, _, value = rest.strip().partition("=")
            args[key] = value
        elif word == "FROM":  # a new stage: only the last one's settings count
            entrypoint, cmd, env, workdir = None, None, {}, None
        elif word == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif word == "CMD":
            cmd = json.loads(rest)
        elif word == "WORKDIR":
            workdir = rest.strip()
        elif word == "ENV":
            for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', rest):
                value = value.strip('"')
                value = re.sub(
                    r"\$(\w+)|\$\{(\w+)\}", lambda m, e=env: e.get(m[1] or m[2], ""), value
                )
                env[key] = value
        elif word == "RUN" and "pip" in rest:
            installs.append(rest)
    return ImageConfig(entrypoint, cmd, env, workdir, installs)


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or REPO / ".nox" / "images")


def python_env(image: Image) -> Path:
    """The virtualenv of `image`, built from its lock (cached by the lock's sha256)."""
    name = image.repository.rsplit("/", 1)[-1]
    install = ["--require-hashes", "--no-deps", "-r", str(image.lock)]
    return _cached_venv(name, image.lock.read_bytes(), install)


def standin_env(name: str, requirements: list[str]) -> Path:
    """A virtualenv for a stand-in of an upstream image (not ours: pinned, not hash-locked)."""
    return _cached_venv(f"standin-{name}", "\n".join(requirements).encode(), requirements)


def _cached_venv(name: str, key: bytes, install: list[str]) -> Path:
    """A virtualenv under the cache, `uv pip install <install>`ed once per sha256 of `key`."""
    target = cache_root() / f"{name}-{hashlib.sha256(key).hexdigest()[:16]}"
    if (target / ".complete").exists():
        return target
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("`uv` is not on PATH: `pip install uv` (CI installs it with nox)")
    # a virtualenv is not relocatable: built in place; `.complete` marks a finished one
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [uv, "venv", "--quiet", "--python", sys.executable, str(target)],
        check=True,
        capture_output=True,
    )
    python = str(target / "bin" / "python")
    done = subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", python, *install],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"installing {' '.join(install)} failed:\n{done.stderr[-2000:]}")
    (target / ".complete").write_text(" ".join(install) + "\n", encoding="utf-8")
    return target
