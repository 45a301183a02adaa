"""Run the experiment catalogue with the real `chaos` CLI, one run directory per experiment.

For each planned run: write `meta.json`, run `chaos run --journal-path ...` in its own process
group (so a Ctrl-C reaches it once, through us), build the run's HTML report, print one line.
At the end: `reports/index.html` and `reports/junit.xml`. The local stack is brought up (with
the profile a run needs) and left as it was found.

On `target=kubernetes` (`--target kubernetes`, or `target` set by --var, a var file or
HELIUS_TARGET) nothing is brought up: the runs go to the allow-listed cluster, the Prometheus
URL comes from the runs' configuration (`prometheus_base_url`: --var, a var file or
HELIUS_PROMETHEUS_URL), and the steady wait asks the cluster and Prometheus
(chaoshelius.suite.cluster). Negative controls are local only: they swap the local stack's
service variants.

SIGTERM / SIGINT: the running `chaos` gets SIGTERM (it plays its rollbacks: every experiment
uses the `always` strategy), its report is still built, no further experiment starts, the
index is written, and the suite exits 130.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from chaoshelius.exceptions import HeliusError
from chaoshelius.report.build import NOT_STEADY_FILE
from chaoshelius.report.model import RunSummary, Verdict
from chaoshelius.suite.chaos import run_one
from chaoshelius.suite.cluster import TARGETS, ResolvedRun, resolve_run
from chaoshelius.suite.interrupts import Interrupts
from chaoshelius.suite.lanes import MAX_LANES, lane_options, run_lanes
from chaoshelius.suite.model import PlannedRun, SuiteError, SuiteOptions, SuiteResult
from chaoshelius.suite.results import close_suite, not_run, summary_line
from chaoshelius.suite.steady import (
    STEADY_NOTE_SECONDS,
    STEADY_TIMEOUT_SECONDS,
    declares_steady_gate,
)
from chaoshelius.suite.targets import ClusterTarget, LocalStack, SuiteTarget
from chaoshelius.topology import Target

__all__ = ["run_suite", "suite_target"]


NEGATIVE_ON_CLUSTER = (
    "--negative runs on the local stack only: its controls swap the local stack's service "
    "variants (profiles), which a cluster's manifests do not have; drop --negative or use "
    "--target local"
)
LANES_ON_CLUSTER = (
    "--lanes runs on the local stack only (one stack per lane); a cluster is one system: "
    "drop --lanes"
)


def suite_target(runs: Sequence[PlannedRun], options: SuiteOptions) -> tuple[str, ResolvedRun]:
    """The target of the suite and the first run's resolved configuration; SuiteError when
    `--target` and the runs' configuration disagree or a cluster run lacks what it needs."""
    if options.target is not None and options.target not in TARGETS:
        raise SuiteError(f"--target {options.target!r}: one of {', '.join(TARGETS)}")
    if not runs:
        raise SuiteError("no runs planned")
    environ = dict(os.environ)
    if options.target is not None:
        environ["HELIUS_TARGET"] = options.target
    try:
        resolved = resolve_run(runs[0].experiment, options.chaos_args, environ)
    except HeliusError as exc:
        raise SuiteError(str(exc)) from exc
    target = resolved.target
    if target not in TARGETS:
        raise SuiteError(f"target {target!r} (from the runs' configuration): one of {TARGETS}")
    if options.target is not None and target != options.target:
        raise SuiteError(
            f"--target {options.target} but the runs' configuration says target={target} "
            "(a --var or var file); make them agree"
        )
    if target == Target.KUBERNETES:
        if any(run.profile is not None for run in runs):
            raise SuiteError(NEGATIVE_ON_CLUSTER)
        if resolved.prometheus_url is None:
            raise SuiteError(
                "target=kubernetes: say which Prometheus the probes ask: --var "
                "prometheus_base_url=http://... (or a var file's prometheus_base_url, or "
                "HELIUS_PROMETHEUS_URL); the experiments' default is the local stack's"
            )
    return target, resolved


def run_suite(runs: Sequence[PlannedRun], options: SuiteOptions) -> SuiteResult:
    """Run `runs` against the local stack or a cluster; see the module docstring."""
    chaos = shutil.which("chaos") or str(Path(sys.executable).with_name("chaos"))
    if not Path(chaos).exists():
        raise SuiteError("the `chaos` CLI is not installed: pip install chaostoolkit")
    target, resolved = suite_target(runs, options)
    if not 1 <= options.lanes <= MAX_LANES:
        raise SuiteError(f"--lanes {options.lanes}: 1 to {MAX_LANES}")
    if target == Target.KUBERNETES:
        if options.lanes > 1:
            raise SuiteError(LANES_ON_CLUSTER)
        return _run_all(runs, options, chaos, ClusterTarget(options, resolved))
    if options.lanes > 1 and len(runs) > 1:
        return _run_in_lanes(runs, options, chaos)
    return _run_all(runs, options, chaos, LocalStack(options))


def _run_in_lanes(runs: Sequence[PlannedRun], options: SuiteOptions, chaos: str) -> SuiteResult:
    """As `_run_all`, `options.lanes` runs at a time, each lane on its own local stack."""
    started = time.monotonic()
    result = SuiteResult(time.strftime("%Y%m%d-%H%M%S"))
    runs_dir = options.reports_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    lanes = min(options.lanes, len(runs))
    ports = ", ".join(str(lane_options(options, n).base_port) for n in range(1, lanes + 1))
    options.echo(f"-- {lanes} lanes, each on its own local stack (base ports {ports})")

    def one(
        position: int, run: PlannedRun, target: SuiteTarget, mine: SuiteOptions, lane: str
    ) -> RunSummary:
        prefix = f"{_prefix(position, len(runs), run)} ({lane})"
        run_dir = runs_dir / run.run_id(result.suite_id)
        if run_dir.exists():  # again, alone: the refused attempt kept, out of the index
            aside = options.reports_dir / "refused" / run_dir.name
            shutil.rmtree(aside, ignore_errors=True)
            aside.parent.mkdir(parents=True, exist_ok=True)
            run_dir.rename(aside)
        summary = _run_when_steady(
            run, run_dir, result.suite_id, chaos, target, interrupts, mine, prefix
        )
        options.echo(f"{prefix.split(' ', 1)[0]} {summary_line(summary)} ({lane})")
        return summary

    stopped_by: BaseException | None = None
    with Interrupts() as interrupts:
        try:
            summaries, stopped_by = run_lanes(
                runs, options, lanes, interrupts, one, refused=partial(_refused, runs_dir)
            )
            result.summaries.extend(summaries.values())
        finally:
            close_suite(result, interrupts, options, runs, stopped_by)
    if stopped_by is not None:
        raise stopped_by
    result.seconds = time.monotonic() - started
    return result


def _run_all(
    runs: Sequence[PlannedRun],
    options: SuiteOptions,
    chaos: str,
    target: SuiteTarget,
) -> SuiteResult:
    """Each run in turn on `target` until the last or an interruption; then the index and
    JUnit, and the target left as found."""
    started = time.monotonic()
    result = SuiteResult(time.strftime("%Y%m%d-%H%M%S"))
    runs_dir = options.reports_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    target.begin()
    stopped_by: BaseException | None = None
    with Interrupts() as interrupts:
        try:
            for position, run in enumerate(runs, start=1):
                if interrupts.fired:
                    break
                prefix = _prefix(position, len(runs), run)
                run_dir = runs_dir / run.run_id(result.suite_id)
                summary = _run_when_steady(
                    run, run_dir, result.suite_id, chaos, target, interrupts, options, prefix
                )
                result.summaries.append(summary)
                options.echo(f"{prefix.split(' ', 1)[0]} {summary_line(summary)}")
        except BaseException as exc:  # the runs it did not start are still recorded, with why
            stopped_by = exc
            raise
        finally:
            close_suite(result, interrupts, options, runs, stopped_by)
            target.leave()
    result.seconds = time.monotonic() - started
    return result


def _refused(runs_dir: Path, summary: RunSummary) -> bool:
    """Turned away unsteady, nothing injected: by the steady gate (its not_steady.json) or
    the suite's own steady wait."""
    if summary.verdict is not Verdict.NOT_JUDGED:
        return False
    gate = (runs_dir / summary.run_id / NOT_STEADY_FILE).exists()
    return gate or summary.reason.startswith(f"The {LocalStack.noun} was not steady")


def _prefix(position: int, total: int, run: PlannedRun) -> str:
    """`[3/8] rds-path-cut [negative:lying-pod] #2`: how a run's lines start."""
    variant = f" [{run.variant}]" if run.variant else ""
    again = f" #{run.repeat}" if run.repeat else ""
    return f"[{position}/{total}] {run.key}{variant}{again}"


def _run_when_steady(
    run: PlannedRun,
    run_dir: Path,
    suite_id: str,
    chaos: str,
    target: SuiteTarget,
    interrupts: Interrupts,
    options: SuiteOptions,
    prefix: str,
) -> RunSummary:
    """One run: the target readied and waited for until steady, then `chaos run`; a run
    whose target does not settle is not judged (a fault injected into a system that is
    already degraded proves nothing)."""
    target.prepare(run)
    if options.progress:
        options.echo(f"{prefix} — waiting for a steady {target.noun}")
    waited = time.monotonic()
    # an experiment with the steady gate checks alerts when its fault is due, so the
    # previous fault's alerts clear during its warm-up, not in a wait before it
    unsteady, held_by = target.unsteady(not declares_steady_gate(run.experiment), interrupts)
    waited = time.monotonic() - waited
    if unsteady is None and held_by and waited >= STEADY_NOTE_SECONDS:
        # where suite time goes: a target that takes long to settle says why
        options.echo(f"-- steady after {waited:.0f} s (waited for: {held_by})")
    if unsteady is not None:
        return not_run(
            run,
            run_dir,
            suite_id,
            f"The {target.noun} was not steady after {STEADY_TIMEOUT_SECONDS:.0f} s "
            f"({unsteady}), so no fault was injected.",
            Verdict.NOT_JUDGED,
        )
    env = target.env(run, run_dir)
    return run_one(run, suite_id, run_dir, chaos, env, interrupts, options, prefix)
