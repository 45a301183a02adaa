"""`chaoshelius images build`: the three images of the manifests, with docker or podman."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from chaoshelius.images import (
    BASE_REGISTRY,
    ENGINES,
    IMAGES,
    ImageError,
    build_plan,
    find_engine,
    images_block,
    kind_load_commands,
    kustomize_commands,
    pushed_digest,
    run_commands,
    select,
    temp_dir,
)


@click.group(name="images")
def group() -> None:
    """The images the manifests run (service, mlflow, harness): build, push, load into kind."""


@group.command("build")
@click.option(
    "--registry",
    default=None,
    help=f"Where the images go, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/helius. "
    f"Default: {BASE_REGISTRY} (the manifests' own names; fine for kind, not yours to push).",
)
@click.option(
    "--tag",
    default=None,
    help="One tag for all three. Default: each image's tag in manifests/base ("
    + ", ".join(f"{i.key} {i.default_tag}" for i in IMAGES)
    + ").",
)
@click.option("--push", is_flag=True, help="Push each image after building (needs --registry).")
@click.option(
    "--engine",
    type=click.Choice(list(ENGINES)),
    default=None,
    help="Default: the first of docker, podman whose engine answers.",
)
@click.option(
    "--load-kind",
    "kind_cluster",
    default=None,
    metavar="CLUSTER",
    help="Load the images into this kind cluster (`kind load`), e.g. helius.",
)
@click.option(
    "--only",
    multiple=True,
    type=click.Choice([i.key for i in IMAGES]),
    help="Build only this image; repeatable.",
)
@click.option(
    "--source",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The repository root (the build contexts are under it).",
)
@click.option(
    "--print-only",
    is_flag=True,
    help="Print the commands and the overlay's images block; run nothing (no engine needed).",
)
def build(
    registry: str | None,
    tag: str | None,
    push: bool,
    engine: str | None,
    kind_cluster: str | None,
    only: tuple[str, ...],
    source: Path,
    print_only: bool,
) -> None:
    """Build the images (then push them, or load them into kind), and print the `images:`
    block an overlay needs to run them.

    Exits 2 when a tool is missing (no docker or podman whose engine answers, no kind), 1 when
    a build, push or load fails.
    """
    try:
        _build(registry, tag, push, engine, kind_cluster, only, source.resolve(), print_only)
    except ImageError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from exc


def _build(
    registry: str | None,
    tag: str | None,
    push: bool,
    engine: str | None,
    kind_cluster: str | None,
    only: tuple[str, ...],
    root: Path,
    print_only: bool,
) -> None:
    images = select(only)
    missing = [i.dockerfile for i in images if not (root / i.dockerfile).is_file()]
    if missing:
        raise ImageError(
            f"{missing[0]} not found under {root}: run from the repository root or pass --source",
            exit_code=2,
        )
    if push and registry is None:
        raise ImageError(
            f"--push needs --registry: {BASE_REGISTRY} is the manifests' name, not your registry",
            exit_code=2,
        )
    target = registry or BASE_REGISTRY
    if print_only:
        name, path = engine or ENGINES[0], engine or ENGINES[0]
    else:
        name, path = find_engine(engine)
    kind = None
    if kind_cluster is not None:
        kind = shutil.which("kind")
        if kind is None and not print_only:
            raise ImageError("--load-kind needs `kind` on PATH (https://kind.sigs.k8s.io)", 2)
        kind = kind or "kind"
    commands = build_plan(path, root, target, tag, images, push)
    refs = [i.ref(target, tag) for i in images]
    if kind_cluster is not None and kind is not None:
        commands += kind_load_commands(path, name, kind, kind_cluster, refs, temp_dir())
    if print_only:
        for argv in commands:
            click.echo("+ " + " ".join(argv))
    else:
        click.echo(f"images: {len(images)} with {name} ({path}) from {root}")
        run_commands(commands, click.echo, root)
        done = "pushed" if push else ("loaded into kind " + str(kind_cluster) if kind else "built")
        click.echo(f"images {done}: {', '.join(refs)}")
    digests: dict[str, str] = {}
    if push and not print_only:
        for image, ref in zip(images, refs, strict=True):
            digest = pushed_digest(path, ref)
            if digest:
                digests[image.key] = digest
            else:
                click.echo(f"# {ref}: the engine reports no registry digest; pinned by tag")
    click.echo("\n# the overlay's kustomization.yaml (manifests/overlays/<kind|aws>):")
    click.echo(images_block(target, tag, images, digests))
    click.echo("# or, equivalently:")
    for line in kustomize_commands("manifests/overlays/aws", target, tag, images, digests):
        click.echo(line)
