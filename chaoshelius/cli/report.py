"""`chaoshelius report`: build a run's HTML report, the index and JUnit XML."""

from __future__ import annotations

from pathlib import Path

import click

from chaoshelius.report.prometheus import DEFAULT_PROMETHEUS_URL, DEFAULT_TIMEOUT_S


@click.group(name="report")
def group() -> None:
    """Build HTML reports, the index and JUnit XML."""


@group.command("build")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--prometheus-url",
    default=DEFAULT_PROMETHEUS_URL,
    show_default=True,
    help="Prometheus to query for the charts (series saved to series.json).",
)
@click.option("--offline", is_flag=True, help="Do not query Prometheus: reuse series.json.")
@click.option("--timeout", "timeout_s", default=DEFAULT_TIMEOUT_S, show_default=True)
def build(run_dir: Path, prometheus_url: str, offline: bool, timeout_s: float) -> None:
    """Write RUN_DIR/report.html (+ summary.json, series.json) from the run's journal."""
    from chaoshelius.report import build_run_report

    report = build_run_report(run_dir, prometheus_url, offline=offline, timeout_s=timeout_s)
    s = report.summary
    click.echo(f"{run_dir / 'report.html'}: {s.verdict} — {s.reason}")
    if s.prometheus_error:
        click.echo(f"warning: {s.prometheus_error}", err=True)


@group.command("index")
@click.argument(
    "reports_dir",
    default="reports",
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option("--suite-id", default=None, help="Only runs of this suite make the current table.")
@click.option(
    "--fail-on-unexpected",
    is_flag=True,
    help="Exit 1 when an experiment of the suite did not end with its expected verdict.",
)
def index(reports_dir: Path, suite_id: str | None, fail_on_unexpected: bool) -> None:
    """Write REPORTS_DIR/index.html and junit.xml from every runs/*/summary.json."""
    from chaoshelius.report import RunDirectoryError, build_index
    from chaoshelius.report.model import unexpected_counts

    try:
        result = build_index(reports_dir, suite_id=suite_id)
    except RunDirectoryError as exc:
        raise click.ClickException(str(exc)) from exc
    bad = [s for s in result.current if not s.as_expected]
    unexpected = unexpected_counts(result.current)
    click.echo(
        f"{result.index_html}: {len(result.current)} experiment(s), {len(bad)} not as expected"
        + (f" ({unexpected})" if unexpected else "")
        + f"; {result.junit_xml}"
    )
    for problem in result.problems:
        click.echo(f"warning: {problem}", err=True)
    if fail_on_unexpected and bad:
        raise SystemExit(1)


@group.command("margins")
@click.argument(
    "reports_dirs",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option("--limit", default=25, show_default=True, help="Rows of the table.")
def margins(reports_dirs: tuple[Path, ...], limit: int) -> None:
    """How close the normal runs under REPORTS_DIRS came to each threshold (a false-alarm
    campaign's evidence): share of each allowance used, closest first, and the load."""
    from chaoshelius.report.margins import collect, render

    found = collect(reports_dirs)
    if not found.runs:
        raise click.ClickException(
            f"no normal runs (runs/*/journal.json) under {', '.join(map(str, reports_dirs))}"
        )
    click.echo(render(found, limit))
