"""`chaoshelius suite run`: the experiment catalogue on the local stack -> reports/."""

from __future__ import annotations

from pathlib import Path

import click

from chaoshelius.exceptions import HeliusError
from chaoshelius.stack.ports import DEFAULT_BASE_PORT
from chaoshelius.stack.state import DEFAULT_STATE_DIR


@click.group(name="suite")
def group() -> None:
    """Run the experiment catalogue (or its negative controls) against the local stack."""


@group.command("run")
@click.option(
    "--experiments",
    "experiments_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("experiments"),
    show_default=True,
)
@click.option("--only", multiple=True, help="Run only this experiment (file stem); repeatable.")
@click.option(
    "--negative",
    is_flag=True,
    help="Run the negative controls: each experiment against its fragile variant; each must "
    "deviate on the probe that guards against that weakness.",
)
@click.option(
    "--reports",
    "reports_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports"),
    show_default=True,
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_STATE_DIR,
    show_default=True,
)
@click.option("--base-port", type=int, default=DEFAULT_BASE_PORT, show_default=True)
@click.option(
    "--keep-stack", is_flag=True, help="Leave the stack running (and on the last profile)."
)
def run(
    experiments_dir: Path,
    only: tuple[str, ...],
    negative: bool,
    reports_dir: Path,
    state_dir: Path,
    base_port: int,
    keep_stack: bool,
) -> None:
    """Run every experiment under load, build each report, then reports/index.html + junit.xml.

    Exits 1 when any run did not end as expected (an experiment deviated, or a negative control
    did not), 130 when interrupted (the running experiment still rolls back and is reported).
    """
    from chaoshelius.suite import SuiteOptions, plan, run_suite

    try:
        runs = plan(experiments_dir, only, negative)
        options = SuiteOptions(reports_dir, state_dir, base_port, keep_stack, click.echo)
        kind = "negative controls" if negative else "experiments"
        click.echo(f"helius suite: {len(runs)} {kind} from {experiments_dir}")
        result = run_suite(runs, options)
    except HeliusError as exc:
        raise click.ClickException(str(exc)) from exc
    bad = [s for s in result.summaries if not s.as_expected]
    if negative and result.summaries:
        from chaoshelius.negative.coverage import coverage, render_coverage

        rows = coverage(result.summaries, experiments_dir)
        click.echo(render_coverage(rows))
    status = "interrupted" if result.interrupted else ("FAILED" if bad else "ok")
    click.echo(
        f"helius suite {result.suite_id}: {status}: {len(result.summaries) - len(bad)}/"
        f"{len(result.summaries)} as expected in {result.seconds:.0f} s; report {result.index_html}"
    )
    raise SystemExit(result.exit_code)
