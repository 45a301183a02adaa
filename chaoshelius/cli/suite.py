"""`chaoshelius suite run`: the experiment catalogue on the local stack or a cluster -> reports/."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from chaoshelius.exceptions import HeliusError
from chaoshelius.stack.ports import DEFAULT_BASE_PORT
from chaoshelius.stack.state import DEFAULT_STATE_DIR
from chaoshelius.topology import Target


@click.group(name="suite")
def group() -> None:
    """Run the experiment catalogue (or its negative controls) against a target."""


@group.command("run")
@click.option(
    "--experiments",
    "experiments_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("experiments"),
    show_default=True,
)
@click.option(
    "--target",
    type=click.Choice([t.value for t in Target]),
    default=None,
    help="Where the runs go. Default: what the runs' configuration says (--var target=..., a "
    "var file, HELIUS_TARGET), else local. On kubernetes no stack is brought up: the kube "
    "allow-lists (HELIUS_KUBE_*) and prometheus_base_url come from the configuration.",
)
@click.option("--only", multiple=True, help="Run only this experiment (file stem); repeatable.")
@click.option(
    "--repeat",
    type=click.IntRange(1, 100),
    default=1,
    show_default=True,
    help="Run each chosen experiment this many times in a row (a false-alarm campaign: a "
    "healthy stack must pass every one).",
)
@click.option(
    "--negative",
    is_flag=True,
    help="Run the negative controls: each experiment against its fragile variant; each must "
    "deviate on the probe that guards against that weakness.",
)
@click.option(
    "--lanes",
    type=click.IntRange(1, 4),
    default=1,
    show_default=True,
    help="Runs at once on the local stack, each lane on its own stack (the state dir with "
    "-lane<n>, the base port + 500 per lane). The lanes share the machine: nox -s negative "
    "uses 2 (docs/experiments.md, 'Lanes'); keep 1 where latency is the verdict.",
)
@click.option(
    "--control",
    "controls",
    multiple=True,
    help="With --negative: run only the controls of this profile (its name in "
    "chaoshelius/negative/profiles/, e.g. lying-pod); repeatable.",
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
@click.option("--var", multiple=True, help="Passed to `chaos run --var` (key=value); repeatable.")
@click.option(
    "--var-file",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Passed to `chaos run --var-file`; repeatable.",
)
@click.option(
    "--control-file",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Passed to `chaos run --control-file` (global controls); repeatable.",
)
@click.option(
    "--dry",
    type=click.Choice(["probes", "actions", "activities", "pause"]),
    default=None,
    help="Passed to `chaos run --dry`: such runs are reported 'not judged'.",
)
@click.option(
    "--hypothesis-strategy",
    type=click.Choice(
        ["default", "before-method-only", "after-method-only", "during-method-only", "continuously"]
    ),
    default=None,
    help="Passed to `chaos run --hypothesis-strategy`.",
)
@click.option(
    "--hypothesis-frequency",
    type=float,
    default=None,
    help="Passed to `chaos run --hypothesis-frequency` (seconds).",
)
@click.option(
    "--safeguards/--no-safeguards",
    default=True,
    show_default=True,
    help="Stop conditions (chaoshelius.controls.safeguards) on normal runs; negative controls "
    "always run without them.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="`[n/N] experiment — phase` lines as runs go. Default: on when stdout is a terminal; "
    "otherwise one line per experiment.",
)
def run(
    experiments_dir: Path,
    only: tuple[str, ...],
    repeat: int,
    negative: bool,
    lanes: int,
    controls: tuple[str, ...],
    reports_dir: Path,
    state_dir: Path,
    base_port: int,
    keep_stack: bool,
    var: tuple[str, ...],
    var_file: tuple[Path, ...],
    control_file: tuple[Path, ...],
    dry: str | None,
    hypothesis_strategy: str | None,
    hypothesis_frequency: float | None,
    safeguards: bool,
    progress: bool | None,
    target: str | None,
) -> None:
    """Run every experiment under load, build each report, then reports/index.html + junit.xml.

    On a cluster (`--target kubernetes`, e.g. with `--var-file experiments/profiles/cluster.json
    --var prometheus_base_url=http://...`) nothing is brought up and --negative is refused.

    Exits 1 when any run did not end as expected (an experiment deviated, or a negative control
    did not; a run not judged, e.g. refused by the steady gate, or not run never is), 130 when
    interrupted (the running experiment still rolls back and is reported; every planned run
    that did not start is reported 'not run').
    """
    from chaoshelius.suite import SuiteOptions, chaos_run_args, plan, run_suite
    from chaoshelius.suite.results import tally

    try:
        runs = plan(experiments_dir, only, negative, repeat, controls)
        chaos_args = chaos_run_args(
            var=var,
            var_file=var_file,
            control_file=control_file,
            dry=dry,
            hypothesis_strategy=hypothesis_strategy,
            hypothesis_frequency=hypothesis_frequency,
        )
        options = SuiteOptions(
            reports_dir,
            state_dir,
            base_port,
            keep_stack,
            click.echo,
            chaos_args=chaos_args,
            progress=sys.stdout.isatty() if progress is None else progress,
            safeguards=safeguards,
            target=target,
            lanes=lanes,
        )
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
        f"helius suite {result.suite_id}: {status}: {tally(result.summaries)} "
        f"in {result.seconds:.0f} s; report {result.index_html}"
    )
    raise SystemExit(result.exit_code)
