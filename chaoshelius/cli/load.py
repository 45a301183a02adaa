"""`chaoshelius load capacity`: measure the request rate the stack sustains, now."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import click

from chaoshelius.config import HarnessConfig
from chaoshelius.exceptions import HeliusError
from chaoshelius.load import _runtime as rt
from chaoshelius.load.capacity import DEFAULT_STEP_SECONDS, DEFAULT_STEPS, measure_capacity


@click.group(name="load")
def group() -> None:
    """The client load (Locust): capacity measurement."""


@group.command("capacity")
@click.option(
    "--host",
    default=HarnessConfig().helius_reco_url,
    show_default=True,
    help="The recommender URL (the local stack's service proxy).",
)
@click.option(
    "--steps",
    default=",".join(str(n) for n in DEFAULT_STEPS),
    show_default=True,
    help="Closed-loop user counts, one step each.",
)
@click.option("--step-seconds", type=float, default=DEFAULT_STEP_SECONDS, show_default=True)
@click.option("--processes", type=int, default=1, show_default=True, help="Locust processes.")
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where Locust's CSVs, its log and capacity.json go (default: a temp dir).",
)
@click.option("--fraction", type=float, help="Also print this fraction of the capacity.")
@click.option("--json", "as_json", is_flag=True, help="Print capacity.json.")
def capacity(
    host: str,
    steps: str,
    step_seconds: float,
    processes: int,
    work_dir: Path | None,
    fraction: float | None,
    as_json: bool,
) -> None:
    """Step the closed-loop load up through STEPS users and report the best sustained rate
    (failure ratio <= 1 %). Measured on this machine, now: Locust's own CPU is part of it."""
    try:
        counts = tuple(int(part) for part in steps.split(",") if part.strip())
    except ValueError as exc:
        raise click.BadParameter(f"--steps {steps!r}: comma-separated integers") from exc
    directory = work_dir or Path(tempfile.mkdtemp(prefix="helius-capacity-"))
    try:
        result = measure_capacity(
            host,
            directory,
            rt.locustfile(rt.load_config({})),
            steps=counts,
            step_seconds=step_seconds,
            processes=processes,
        )
    except HeliusError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=1))
        return
    for step in result.steps:
        click.echo(
            f"{step.users:>4} users: {step.rps:8.1f} req/s  failures {step.failure_ratio:.2%}"
        )
    cpu = result.locust_cpu_ms_per_request
    click.echo(
        f"capacity {result.capacity_rps:.1f} req/s at {result.best_users} users "
        f"({'saturated' if result.saturated else 'not saturated: a floor'}; "
        f"{processes} Locust process(es), {os.cpu_count()} CPUs)"
    )
    if cpu:
        click.echo(
            f"Locust used {cpu:.3f} CPU-ms per request: one busy core of Locust makes "
            f"~{1000 / cpu:.0f} req/s"
        )
    if fraction is not None:
        click.echo(f"{fraction:g} of it: {result.capacity_rps * fraction:.1f} req/s")
    click.echo(f"details: {directory / 'capacity.json'}")
