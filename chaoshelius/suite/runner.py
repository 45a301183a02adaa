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
from typing import Any

from chaoshelius.exceptions import HeliusError
from chaoshelius.promapi import PrometheusAPI
from chaoshelius.report.model import Verdict
from chaoshelius.stack import auth, lifecycle
from chaoshelius.stack.config import StackConfig
from chaoshelius.stack.state import StackPaths
from chaoshelius.suite.chaos import chaos_env, cluster_env, run_one
from chaoshelius.suite.cluster import (
    PREDICTION_CHECK_SKIPPED,
    TARGETS,
    ResolvedRun,
    cluster_unsteady_reason,
    resolve_run,
)
from chaoshelius.suite.interrupts import Interrupts
from chaoshelius.suite.model import PlannedRun, SuiteError, SuiteOptions, SuiteResult
from chaoshelius.suite.results import close_suite, not_run, summary_line
from chaoshelius.suite.steady import (
    STEADY_NOTE_SECONDS,
    STEADY_TIMEOUT_SECONDS,
    await_steady,
    declares_steady_gate,
    poll_steady,
)

__all__ = ["run_suite", "suite_target"]


NEGATIVE_ON_CLUSTER = (
    "--negative runs on the local stack only: its controls swap the local stack's service "
    "variants (profiles), which a cluster's manifests do not have; drop --negative or use "
    "--target local"
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
    if target == "kubernetes":
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
    if target == "kubernetes":
        return _run_on_cluster(runs, options, chaos, resolved)
    started = time.monotonic()
    result = SuiteResult(time.strftime("%Y%m%d-%H%M%S"))
    runs_dir = options.reports_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    paths = StackPaths(options.state_dir.resolve())
    found = lifecycle.running_state(paths)
    found_profile = StackConfig.model_validate(found["profile"]) if found else None
    echo = options.echo
    with Interrupts() as interrupts:
        try:
            current: Path | None = None
            state: dict[str, Any] | None = None  # None: not brought up by this suite yet
            for position, run in enumerate(runs, start=1):
                if interrupts.fired:
                    break
                prefix = (
                    f"[{position}/{len(runs)}] {run.key}"
                    + (f" [{run.variant}]" if run.variant else "")
                    + (f" #{run.repeat}" if run.repeat else "")
                )
                if state is None or run.profile != current:
                    config = StackConfig.load(run.profile) if run.profile else StackConfig()
                    if options.progress:
                        echo(f"-- local stack, profile {config.name!r}: starting (if needed)")
                    up = lifecycle.up(options.state_dir, options.base_port, config, restart=True)
                    state, current = up.state, run.profile
                if options.progress:
                    echo(f"{prefix} — waiting for a steady stack")
                waited = time.monotonic()
                # an experiment with the steady gate checks alerts when its fault is due, so
                # the previous fault's alerts clear during its warm-up, not in a wait before it
                unsteady, held_by = await_steady(
                    options.state_dir,
                    state,
                    STEADY_TIMEOUT_SECONDS,
                    interrupts,
                    alerts=not declares_steady_gate(run.experiment),
                )
                waited = time.monotonic() - waited
                if unsteady is None and held_by and waited >= STEADY_NOTE_SECONDS:
                    # where suite time goes: a stack that takes long to settle says why
                    echo(f"-- steady after {waited:.0f} s (waited for: {held_by})")
                if unsteady is not None:
                    # a fault injected into a stack that is already degraded proves nothing
                    summary = not_run(
                        run,
                        runs_dir / run.run_id(result.suite_id),
                        result.suite_id,
                        f"The stack was not steady after {STEADY_TIMEOUT_SECONDS:.0f} s "
                        f"({unsteady}), so no fault was injected.",
                        Verdict.NOT_JUDGED,
                    )
                    result.summaries.append(summary)
                    echo(f"{prefix.split(' ', 1)[0]} {summary_line(summary)}")
                    continue
                token = auth.find_token(paths.root) or ""
                run_dir = runs_dir / run.run_id(result.suite_id)
                env = chaos_env(run, run_dir, state["ports"], options, token)
                summary = run_one(
                    run, result.suite_id, run_dir, chaos, env, interrupts, options, prefix
                )
                result.summaries.append(summary)
                echo(f"{prefix.split(' ', 1)[0]} {summary_line(summary)}")
        finally:
            close_suite(result, interrupts, options)
            _leave_stack(options, found_profile)
    result.seconds = time.monotonic() - started
    return result


def _run_on_cluster(
    runs: Sequence[PlannedRun], options: SuiteOptions, chaos: str, resolved: ResolvedRun
) -> SuiteResult:
    """The suite on target=kubernetes: no stack to bring up or leave; see the module
    docstring and chaoshelius.suite.cluster."""
    from chaoshelius.drivers import get_driver

    try:
        config = resolved.harness_config()
        driver = get_driver(config)  # the allow-lists are checked here, once, before any run
    except HeliusError as exc:
        raise SuiteError(f"target=kubernetes: {exc}") from exc
    started = time.monotonic()
    result = SuiteResult(time.strftime("%Y%m%d-%H%M%S"))
    runs_dir = options.reports_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    prometheus_url = str(resolved.prometheus_url)
    echo = options.echo
    prom = PrometheusAPI(prometheus_url, config.helius_http_timeout_seconds)
    echo(
        f"-- target kubernetes: namespace {config.kube_namespace!r}, Prometheus "
        f"{prometheus_url}; {PREDICTION_CHECK_SKIPPED}"
    )
    with Interrupts() as interrupts:
        try:
            for position, run in enumerate(runs, start=1):
                if interrupts.fired:
                    break
                prefix = f"[{position}/{len(runs)}] {run.key}" + (
                    f" #{run.repeat}" if run.repeat else ""
                )
                if options.progress:
                    echo(f"{prefix} — waiting for a steady cluster")
                run_dir = runs_dir / run.run_id(result.suite_id)
                alerts = not declares_steady_gate(run.experiment)
                waited = time.monotonic()
                unsteady, held_by = poll_steady(
                    partial(cluster_unsteady_reason, driver, prom, config.kube_namespace, alerts),
                    STEADY_TIMEOUT_SECONDS,
                    interrupts,
                )
                waited = time.monotonic() - waited
                if unsteady is None and held_by and waited >= STEADY_NOTE_SECONDS:
                    echo(f"-- steady after {waited:.0f} s (waited for: {held_by})")
                if unsteady is not None:
                    summary = not_run(
                        run,
                        run_dir,
                        result.suite_id,
                        f"The cluster was not steady after {STEADY_TIMEOUT_SECONDS:.0f} s "
                        f"({unsteady}), so no fault was injected.",
                        Verdict.NOT_JUDGED,
                    )
                else:
                    env = cluster_env(run, run_dir, prometheus_url, options)
                    summary = run_one(
                        run, result.suite_id, run_dir, chaos, env, interrupts, options, prefix
                    )
                result.summaries.append(summary)
                echo(f"{prefix.split(' ', 1)[0]} {summary_line(summary)}")
        finally:
            close_suite(result, interrupts, options)
    result.seconds = time.monotonic() - started
    return result


def _leave_stack(options: SuiteOptions, found: StackConfig | None) -> None:
    """Leave the stack as found: down if we started it, else back on its own profile."""
    if options.keep_stack:
        return
    if found is None:
        lifecycle.down(options.state_dir)
    else:
        lifecycle.up(options.state_dir, options.base_port, found, restart=True)
