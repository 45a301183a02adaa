"""`chaoshelius stack up | down | status`: the embedded local stack from the command line."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import click

from chaoshelius.stack import api_models as api
from chaoshelius.stack import cpus, lifecycle
from chaoshelius.stack.client import ControlClient
from chaoshelius.stack.config import StackConfig
from chaoshelius.stack.errors import StackError
from chaoshelius.stack.ports import DEFAULT_BASE_PORT, StackPorts
from chaoshelius.stack.state import DEFAULT_STATE_DIR, StackPaths

_state_dir = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_STATE_DIR,
    show_default=True,
    help="Where the stack keeps its data, logs and stack.json.",
)


@click.group()
def group() -> None:
    """The embedded local stack: PostgreSQL, MLflow x3, recommender x3, proxies, Prometheus."""


@group.command()
@_state_dir
@click.option("--base-port", type=int, default=DEFAULT_BASE_PORT, show_default=True)
@click.option(
    "--profile",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Stack profile (JSON/YAML): replicas, zones, recommender app/env (negative controls).",
)
@click.option("--restart", is_flag=True, help="Restart a running stack whose profile differs.")
@click.option("--timeout", type=float, default=lifecycle.UP_TIMEOUT_SECONDS, show_default=True)
@click.option(
    "--cpus",
    "cpu_list",
    help="Run the stack (every process it starts) on these CPUs only, e.g. 0 or 0-1 (Linux).",
)
def up(
    state_dir: Path,
    base_port: int,
    profile: Path | None,
    restart: bool,
    timeout: float,
    cpu_list: str | None,
) -> None:
    """Start the stack and wait until every pod is ready (harmless if already up)."""
    try:
        config = StackConfig.load(profile) if profile else StackConfig()
        pinned = cpus.parse(cpu_list) if cpu_list is not None else None
        result = lifecycle.up(
            state_dir, base_port, config, restart=restart, timeout=timeout, cpus=pinned
        )
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    if result.profile_swapped:
        verb = f"switched to this profile in place in {result.seconds:.1f} s"
    elif result.already_running:
        verb = "already up"
    else:
        verb = f"ready in {result.seconds:.1f} s"
    ports = StackPorts(base_port)  # a running stack on another base port was refused above
    click.echo(f"helius local stack {verb} (profile {config.name!r}, state {state_dir})")
    click.echo(f"  service     http://127.0.0.1:{ports.reco_service}")
    click.echo(f"  mlflow      http://127.0.0.1:{ports.mlflow_service}")
    click.echo(f"  prometheus  http://127.0.0.1:{ports.prometheus}")
    click.echo(f"  control API http://127.0.0.1:{ports.control}")


@group.command()
@_state_dir
def down(state_dir: Path) -> None:
    """Stop everything the stack started (pods, Prometheus, PostgreSQL, the supervisor)."""
    try:
        stopped = lifecycle.down(state_dir)
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("stack stopped" if stopped else f"no stack running in {state_dir}")


@group.command()
@_state_dir
@click.option("--json", "as_json", is_flag=True, help="Print the control API's /status JSON.")
def status(state_dir: Path, as_json: bool) -> None:
    """Pods (app, zone, state, restarts) and active faults."""
    state = lifecycle.running_state(StackPaths(state_dir.resolve()))
    if state is None:
        raise click.ClickException(f"no stack running in {state_dir}")
    try:
        client = ControlClient.for_state_dir(state_dir)  # the URL and the token, from DIR
        try:
            body = client.status()
        finally:
            client.close()
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(body, indent=1))
        return
    click.echo(_render(api.Status.model_validate(body)))


def _render(status: api.Status) -> str:
    now = time.time()
    lines = [f"phase: {status.phase}" + (f"  error: {status.error}" if status.error else "")]
    header = ("POD", "APP", "ZONE", "STATE", "RESTARTS", "AGE", "PORT")
    rows = [
        (
            p.name,
            p.app,
            p.zone,
            p.state,
            str(p.restarts),
            f"{now - p.started_at:.0f}s",
            str(p.port),
        )  # fmt: skip
        for p in status.pods
    ]
    lines += _table(header, rows)
    faults = status.faults
    lines.append("")
    if not faults:
        lines.append("active faults: none")
    else:
        lines += _table(
            ("FAULT", "KIND", "TARGET", "PARAMS", "EXPIRES IN"),
            [
                (
                    f.id,
                    f.kind,
                    f.target,
                    ",".join(f"{k}={v}" for k, v in f.params.items()) or "-",
                    f"{f.expires_at - now:.0f}s",
                )  # fmt: skip
                for f in faults
            ],
        )
    if status.drained_zones:
        lines.append(f"drained zones: {', '.join(status.drained_zones)}")
    balancing = [
        f"{name.removeprefix('service:')} per {proxy.balancing}"
        for name, proxy in sorted(status.proxies.items())
        if name.startswith("service:") and proxy.balancing
    ]
    if balancing:
        lines.append(f"service proxies balance: {', '.join(balancing)}")
    return "\n".join(lines)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=False)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in [header, *rows]
    ]
