"""What a suite writes and prints about its runs: one line per run, the summary of a run that
could not be judged, the planned runs that never started, and the index and JUnit at the end."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from chaoshelius.report import build_index
from chaoshelius.report.model import Kpis, RunSummary, Verdict, unexpected_counts
from chaoshelius.report.units import format_quantity
from chaoshelius.suite.interrupts import Interrupts
from chaoshelius.suite.model import PlannedRun, SuiteOptions, SuiteResult

__all__ = ["close_suite", "not_run", "summary_line", "tally", "unreported"]


def summary_line(s: RunSummary) -> str:
    """One line per run: name, verdict, expectation, duration, score and the KPIs, each in
    the unit the report uses."""
    k = s.kpis
    name = s.experiment_key + (f" [{s.variant}]" if s.variant else "")
    mark = "ok  " if s.as_expected else "FAIL"
    score = "n/a" if s.resilience_score is None else f"{s.resilience_score:.0f}/100"
    parts = [
        f"{mark} {name:<48} {s.verdict!s:<11}",
        f"expected {s.expected_verdict}"
        + (
            f" on {', '.join(s.expected_failing_probes or (s.expected_failing_probe,))}"
            if s.expected_failing_probe
            else ""
        ),
        f"{s.duration_s or 0:.0f} s",
        f"score {score}",
        f"availability {_kpi(k.availability_during_fault, '%')}",
        f"fallback {_kpi(k.time_to_fallback_s, 's')}",
        f"recover {_kpi(k.time_to_recover_s, 's')}",
        f"worst p99 {_kpi(k.worst_p99_s, 'ms')}",
        f"p99 during/before {_kpi(k.p99_ratio, 'x')}",
        f"load {_kpi(k.load_rps_during_fault, 'req/s')}",
    ]
    if s.failing_probes or s.failing_probe:
        parts.append(f"failing {', '.join(s.failing_probes or (str(s.failing_probe),))}")
    return "  ".join(parts)


def _kpi(value: float | None, unit: str) -> str:
    return "n/a" if value is None else format_quantity(value, unit)


def tally(summaries: Sequence[RunSummary]) -> str:
    """`7/10 as expected (1 deviated, 1 not judged, 1 not run)`: every planned run counted."""
    good = sum(s.as_expected for s in summaries)
    unexpected = unexpected_counts(summaries)
    return f"{good}/{len(summaries)} as expected" + (f" ({unexpected})" if unexpected else "")


def close_suite(
    result: SuiteResult,
    interrupts: Interrupts,
    options: SuiteOptions,
    runs: Sequence[PlannedRun] = (),
    stopped_by: BaseException | None = None,
) -> None:
    """What every suite does on its way out, interrupted or not: note the interruption, record
    each planned run that never started as 'not run' (with why: the campaign counts it), and
    write the index and JUnit over them all."""
    result.interrupted = interrupts.fired
    done = {s.run_id for s in result.summaries}
    missed = [run for run in runs if run.run_id(result.suite_id) not in done]
    if interrupts.fired:
        reason = "The suite was interrupted before this run started."
    elif stopped_by is not None:
        stopped = f"{type(stopped_by).__name__}: {stopped_by}"
        reason = f"The suite stopped before this run started ({stopped})."
    else:
        reason = "The suite ended before this run started."
    for run in missed:
        run_dir = options.reports_dir / "runs" / run.run_id(result.suite_id)
        summary = not_run(run, run_dir, result.suite_id, reason, Verdict.NOT_RUN)
        result.summaries.append(summary)
        position = list(runs).index(run) + 1
        options.echo(f"[{position}/{len(runs)}] {summary_line(summary)}")
    # in the plan's order, whichever lane ran them
    order = {run.run_id(result.suite_id): n for n, run in enumerate(runs)}
    result.summaries.sort(key=lambda s: order.get(s.run_id, len(order)))
    if result.summaries:
        index = build_index(options.reports_dir, suite_id=result.suite_id)
        result.index_html, result.junit_xml = index.index_html, index.junit_xml


def unreported(run: PlannedRun, run_dir: Path, suite_id: str, exc: Exception) -> RunSummary:
    """The summary of a run whose report could not be built (the journal is still on disk)."""
    reason = f"the report could not be built ({type(exc).__name__}: {exc}); see {run_dir}"
    return not_run(run, run_dir, suite_id, reason)


def not_run(
    run: PlannedRun,
    run_dir: Path,
    suite_id: str,
    reason: str,
    verdict: Verdict = Verdict.FAILED,
) -> RunSummary:
    """A summary for a run that produced no judgeable journal, saying why."""
    run_dir.mkdir(parents=True, exist_ok=True)
    summary = RunSummary(
        run_id=run_dir.name,
        experiment_key=run.key,
        experiment_title=run.key,
        verdict=verdict,
        reason=reason,
        status=None,
        deviated=False,
        started_at=None,
        ended_at=None,
        duration_s=None,
        failing_probe=None,
        kpis=Kpis(notes=(reason,)),
        expected_verdict=run.expected,
        variant=run.variant,
        suite_id=suite_id,
        expected_failing_probe=run.expected_probes[0] if run.expected_probes else None,
        expected_failing_probes=run.expected_probes,
    )
    (run_dir / "summary.json").write_text(json.dumps(summary.as_dict(), indent=2))
    return summary
