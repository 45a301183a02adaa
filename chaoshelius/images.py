"""The three images this project ships, built with docker or podman, and how an overlay uses them.

`chaoshelius images build` (chaoshelius/cli/images.py) builds, in this order:

- `helius-reco-service`: service/Dockerfile, context service/ (its .dockerignore applies);
- `mlflow-server`: manifests/images/mlflow/Dockerfile, context manifests/images/mlflow;
- `helius-harness`: manifests/images/harness/Dockerfile, context the repository root (it
  copies chaoshelius/ and loadtests/).

Each is tagged `<registry>/<name>:<tag>`; the manifests refer to them by their `base` names
(ghcr.io/helius/<name>), which an overlay's `images:` block (or `kustomize edit set image`)
rewrites to the user's registry. Optionally pushes them, or loads them into a kind cluster.
The engine is checked first: a client whose daemon does not answer (`docker info` fails) is
not an engine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from chaoshelius.exceptions import HeliusError

__all__ = [
    "BASE_REGISTRY",
    "ENGINES",
    "IMAGES",
    "Image",
    "ImageError",
    "build_plan",
    "find_engine",
    "images_block",
    "kind_load_commands",
    "kustomize_commands",
    "pushed_digest",
]

BASE_REGISTRY = "ghcr.io/helius"  # what manifests/base names; the project's, not a user's
ENGINES = ("docker", "podman")
ENGINE_CHECK_SECONDS = 30.0


class ImageError(HeliusError):
    """An image cannot be built, pushed or loaded; `exit_code` 2 means: a tool is missing."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Image:
    key: str  # what --only takes
    name: str  # the repository name under a registry
    dockerfile: str  # relative to the repository root
    context: str  # relative to the repository root
    default_tag: str  # the tag manifests/base uses

    @property
    def base_ref(self) -> str:
        """The reference manifests/base uses (what an `images:` entry's `name` matches)."""
        return f"{BASE_REGISTRY}/{self.name}"

    def ref(self, registry: str, tag: str | None) -> str:
        return f"{registry.rstrip('/')}/{self.name}:{tag or self.default_tag}"


IMAGES = (
    Image("service", "helius-reco-service", "service/Dockerfile", "service", "0.1.0"),
    Image(
        "mlflow",
        "mlflow-server",
        "manifests/images/mlflow/Dockerfile",
        "manifests/images/mlflow",
        "3.17.2",
    ),
    Image("harness", "helius-harness", "manifests/images/harness/Dockerfile", ".", "0.1.0"),
)


def select(only: Sequence[str] = ()) -> tuple[Image, ...]:
    keys = {i.key for i in IMAGES}
    unknown = sorted(set(only) - keys)
    if unknown:
        raise ImageError(f"unknown image(s) {unknown}; known: {sorted(keys)}", exit_code=2)
    return tuple(i for i in IMAGES if not only or i.key in only)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def find_engine(
    preferred: str | None = None,
    which: Callable[[str], str | None] = shutil.which,
) -> tuple[str, str]:
    """(engine name, its executable): the preferred one, else the first of docker, podman
    that is installed *and* answers `<engine> info`. ImageError (exit code 2) saying what is
    missing otherwise."""
    candidates = (preferred,) if preferred else ENGINES
    problems: list[str] = []
    for name in candidates:
        path = which(name)
        if path is None:
            problems.append(f"{name}: not on PATH")
            continue
        try:
            done = subprocess.run(  # noqa: S603  argv list: the engine's own CLI
                [path, "info"],
                capture_output=True,
                text=True,
                timeout=ENGINE_CHECK_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            problems.append(f"{name}: installed, but `{name} info` did not answer ({exc})")
            continue
        if done.returncode != 0:
            why = _last_line(done.stderr or done.stdout)
            problems.append(
                f"{name}: the client is installed but its engine does not answer "
                f"(`{name} info`: {why})"
            )
            continue
        return name, path
    raise ImageError(
        "no usable container engine: "
        + "; ".join(problems)
        + " — install or start docker or podman (or pass --engine), or use --print-only",
        exit_code=2,
    )


def build_plan(
    engine: str,
    root: Path,
    registry: str,
    tag: str | None,
    images: Sequence[Image] = IMAGES,
    push: bool = False,
) -> list[list[str]]:
    """The engine commands, in order: one build per image (then one push each)."""
    commands: list[list[str]] = []
    for image in images:
        commands.append(
            [
                engine,
                "build",
                "-f",
                str(root / image.dockerfile),
                "-t",
                image.ref(registry, tag),
                str(root / image.context),
            ]  # fmt: skip
        )
    if push:
        commands += [[engine, "push", image.ref(registry, tag)] for image in images]
    return commands


def kind_load_commands(
    engine: str,
    engine_name: str,
    kind: str,
    cluster: str,
    refs: Sequence[str],
    archive_dir: Path,
) -> list[list[str]]:
    """Side-load images into a kind cluster: `kind load docker-image` from docker; from podman
    an archive first (`podman save --multi-image-archive`: without it the other names would
    be read as tags of the first image; then `kind load image-archive`)."""
    if engine_name == "docker":
        return [[kind, "load", "docker-image", "--name", cluster, *refs]]
    archive = str(archive_dir / "helius-images.tar")
    return [
        [
            engine,
            "save",
            "--format",
            "docker-archive",
            "--multi-image-archive",
            "-o",
            archive,
            *refs,
        ],  # fmt: skip
        [kind, "load", "image-archive", "--name", cluster, archive],
    ]


def images_block(
    registry: str,
    tag: str | None,
    images: Sequence[Image] = IMAGES,
    digests: Mapping[str, str] | None = None,
) -> str:
    """The kustomization `images:` block pointing the manifests at these builds: by digest
    for each image in `digests` (key -> "sha256:..."), else by tag."""
    lines = ["images:"]
    for image in images:
        new_name, new_tag = image.ref(registry, tag).rsplit(":", 1)
        lines += [f"  - name: {image.base_ref}", f"    newName: {new_name}"]
        digest = (digests or {}).get(image.key)
        if digest:
            lines.append(f"    digest: {digest}  # pushed as tag {new_tag}")
        elif _needs_quotes(new_tag):
            lines.append(f"    newTag: {new_tag!r}")
        else:
            lines.append(f"    newTag: {new_tag}")
    return "\n".join(lines)


def pushed_digest(engine: str, ref: str) -> str | None:
    """The registry digest ("sha256:...") of `ref` after a push, from the engine's RepoDigests
    (docker and podman both record it); None when the engine does not say."""
    repository = ref.rsplit(":", 1)[0]
    try:
        done = subprocess.run(  # noqa: S603  argv list: the engine's own CLI
            [engine, "image", "inspect", "--format", "{{json .RepoDigests}}", ref],
            capture_output=True,
            text=True,
            timeout=ENGINE_CHECK_SECONDS,
            check=False,
        )
        found = json.loads(done.stdout or "null") if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    for entry in found if isinstance(found, list) else []:
        name, _, digest = str(entry).partition("@")
        if name == repository and digest.startswith("sha256:"):
            return digest
    return None


def _needs_quotes(tag: str) -> bool:
    """YAML would read 1.0 or 20261207 as a number: quote such tags."""
    try:
        float(tag)
    except ValueError:
        return False
    return True


def kustomize_commands(
    overlay: str,
    registry: str,
    tag: str | None,
    images: Sequence[Image] = IMAGES,
    digests: Mapping[str, str] | None = None,
) -> list[str]:
    """The same as `kustomize edit set image` lines, run in the overlay's directory."""
    found = digests or {}
    sets = " ".join(
        f"{i.base_ref}="
        + (
            f"{i.ref(registry, tag).rsplit(':', 1)[0]}@{found[i.key]}"
            if i.key in found
            else i.ref(registry, tag)
        )
        for i in images
    )
    return [f"cd {overlay} && kustomize edit set image {sets}"]


def run_commands(commands: Sequence[Sequence[str]], echo: Callable[[str], None], cwd: Path) -> None:
    """Run each command (printed first); ImageError on the first that fails."""
    for argv in commands:
        echo("+ " + " ".join(argv))
        try:
            done = subprocess.run(list(argv), cwd=cwd, check=False)  # noqa: S603  argv list
        except OSError as exc:
            raise ImageError(f"cannot run {argv[0]}: {exc}", exit_code=2) from exc
        if done.returncode != 0:
            what = " ".join([Path(argv[0]).name, *argv[1:2]])
            raise ImageError(
                f"`{what}` failed with exit code {done.returncode} (its output is above); "
                "nothing after it ran"
            )


def temp_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="helius-images-"))
