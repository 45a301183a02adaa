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

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from chaoshelius.controls import steady_gate
from chaoshelius.exceptions import HeliusError
from chaoshelius.negative import load_controls
from chaoshelius.promapi import PromAPIError, PrometheusAPI
from chaoshelius.report import build_index, build_run_report
from chaoshelius.report.model import Kpis, RunSummary, Verdict
from chaoshelius.report.units import format_quantity
from chaoshelius.stack import api_models as api
from chaoshelius.stack import auth, lifecycle
from chaoshelius.stack.client import ControlClient
from chaoshelius.stack.config import StackConfig
from chaoshelius.stack.errors import StackError
from chaoshelius.stack.ports import DEFAULT_BASE_PORT
from chaoshelius.stack.state import StackPaths
from chaoshelius.suite.cluster import (
    PREDICTION_CHECK_SKIPPED,
    TARGETS,
    ResolvedRun,
    cluster_unsteady_reason,
    resolve_run,
)
from chaoshelius.suite.progress import LogFollower, PhaseTracker, load_action_names
from chaoshelius.topology import FALLBACK_GAUGE, NAMESPACE, App

__all__ = [
    "DRY_MODES",
    "HYPOTHESIS_STRATEGIES",
    "PlannedRun",
    "SuiteError",
    "SuiteOptions",
    "SuiteResult",
    "chaos_argv",
    "chaos_env",
    "chaos_run_args",
    "cluster_env",
    "plan",
    "progress_reporter",
    "run_suite",
    "suite_target",
    "summary_line",
]

# `chaos run` choices (chaostoolkit 1.21: chaostoolkit/commands/run.py)
DRY_MODES = ("probes", "actions", "activities", "pause")
HYPOTHESIS_STRATEGIES = (
    "default",
    "before-method-only",
    "after-method-only",
    "during-method-only",
    "continuously",
)
SAFEGUARDS_ENV = "HELIUS_SAFEGUARDS"  # chaoshelius.controls.safeguards reads it

INTERRUPTED_EXIT = 130
CHAOS_STOP_GRACE_SECONDS = 120.0  # rollbacks + after-hypothesis queries, then SIGKILL
STEADY_TIMEOUT_SECONDS = 120.0  # before each run: the previous one's recovery to settle
STEADY_NOTE_SECONDS = 10.0  # a longer wait is printed with what it waited for


class SuiteError(HeliusError):
    """The suite cannot start (no experiments, unknown name, `chaos` not installed...)."""


@dataclass(frozen=True)
class PlannedRun:
    experiment: Path
    profile: Path | None = None  # stack profile; None = the shipped default
    expected: Verdict = Verdict.PASSED
    expected_probes: tuple[str, ...] = ()  # negative controls: probes that must fail
    repeat: int = 0  # 1..N when the suite runs each experiment N times (0: once)

    @property
    def key(self) -> str:
        return self.experiment.stem

    @property
    def variant(self) -> str | None:
        return None if self.profile is None else f"negative:{self.profile.stem}"

    def run_id(self, suite_id: str) -> str:
        suffix = "" if self.profile is None else f"--{self.profile.stem}"
        again = f"-r{self.repeat:02d}" if self.repeat else ""
        return f"{suite_id}-{self.key}{suffix}{again}"


@dataclass(frozen=True)
class SuiteOptions:
    reports_dir: Path = Path("reports")
    state_dir: Path = Path(".helius") / "stack"
    base_port: int = DEFAULT_BASE_PORT
    keep_stack: bool = False
    echo: Callable[[str], None] = print
    chaos_args: tuple[str, ...] = ()  # passed to every `chaos run` (see chaos_run_args)
    progress: bool = False  # phase lines as runs go (a terminal); else one line per run
    safeguards: bool = True  # off for negative controls whatever this says
    # local | kubernetes; None: what the runs' configuration says (--var target=..., a var
    # file, HELIUS_TARGET), else local
    target: str | None = None


@dataclass
class SuiteResult:
    suite_id: str
    summaries: list[RunSummary] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    index_html: Path | None = None
    junit_xml: Path | None = None

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return INTERRUPTED_EXIT
        return 0 if all(s.as_expected for s in self.summaries) else 1


def plan(
    experiments_dir: Path, only: Sequence[str] = (), negative: bool = False, repeat: int = 1
) -> list[PlannedRun]:
    """The runs of the catalogue (or of `only`), in file order; negatives grouped by profile.
    With `repeat` N > 1, each run N times in a row (a false-alarm campaign), numbered."""
    if repeat < 1:
        raise SuiteError(f"--repeat {repeat}: at least 1")
    once = _plan_once(experiments_dir, only, negative)
    if repeat == 1:
        return once
    return [replace(run, repeat=i) for run in once for i in range(1, repeat + 1)]


def _plan_once(experiments_dir: Path, only: Sequence[str], negative: bool) -> list[PlannedRun]:
    files = sorted(experiments_dir.glob("*.json"))
    if not files:
        raise SuiteError(f"no experiments (*.json) in {experiments_dir}")
    by_key = {f.stem: f for f in files}
    unknown = [name for name in only if name not in by_key]
    if unknown:
        raise SuiteError(f"unknown experiment(s) {unknown}; known: {sorted(by_key)}")
    chosen = [by_key[name] for name in only] if only else files
    for path in chosen:
        _validate(path)
    if not negative:
        return [PlannedRun(f) for f in chosen]
    controls = [c for c in load_controls() if c.experiment in {f.stem for f in chosen}]
    missing = sorted({f.stem for f in chosen} - {c.experiment for c in controls})
    if missing:
        raise SuiteError(f"no negative control for {missing}; add them to chaoshelius/negative/")
    by_stem = {f.stem: f for f in chosen}
    runs = [
        PlannedRun(
            by_stem[c.experiment],
            c.profile_file,
            Verdict.DEVIATED,
            c.probes,
        )
        for c in controls
    ]
    # one profile change per profile; those the running stack can swap in place (recommender
    # pods only) first, the few that restart the whole stack last (one restart, not two each)
    return sorted(runs, key=lambda r: (_needs_restart(r.profile), str(r.profile), r.key))


def _needs_restart(profile: Path | None) -> bool:
    if profile is None:
        return False
    return not StackConfig().differs_only_in_recommender(StackConfig.load(profile))


def _validate(path: Path) -> None:
    """Chaos Toolkit's own validation, before any stack is started: one line on failure."""
    from chaoslib.exceptions import ChaosException
    from chaoslib.experiment import ensure_experiment_is_valid
    from chaoslib.loader import load_experiment

    try:
        ensure_experiment_is_valid(load_experiment(str(path)))
    except (ChaosException, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SuiteError(f"{path} is not a valid experiment: {first}") from exc


def chaos_run_args(
    *,
    var: Sequence[str] = (),
    var_file: Sequence[Path] = (),
    control_file: Sequence[Path] = (),
    dry: str | None = None,
    hypothesis_strategy: str | None = None,
    hypothesis_frequency: float | None = None,
) -> tuple[str, ...]:
    """The `chaos run` options the suite passes through, in `chaos run`'s own spelling."""
    if dry is not None and dry not in DRY_MODES:
        raise SuiteError(f"--dry {dry!r}: one of {', '.join(DRY_MODES)}")
    if hypothesis_strategy is not None and hypothesis_strategy not in HYPOTHESIS_STRATEGIES:
        raise SuiteError(
            f"--hypothesis-strategy {hypothesis_strategy!r}: one of "
            f"{', '.join(HYPOTHESIS_STRATEGIES)}"
        )
    args: list[str] = []
    for item in var:
        if "=" not in item:
            raise SuiteError(f"--var {item!r}: expected key=value (or key=value:type)")
        args += ["--var", item]
    for path in var_file:
        args += ["--var-file", str(Path(path).resolve())]
    for path in control_file:
        args += ["--control-file", str(Path(path).resolve())]
    if dry is not None:
        args += ["--dry", dry]
    if hypothesis_strategy is not None:
        args += ["--hypothesis-strategy", hypothesis_strategy]
    if hypothesis_frequency is not None:
        args += ["--hypothesis-frequency", f"{hypothesis_frequency:g}"]
    return tuple(args)


def chaos_argv(
    chaos: str, run_dir: Path, experiment: Path, chaos_args: Sequence[str] = ()
) -> list[str]:
    """`chaos --log-file <run_dir>/chaos.log run <options> --journal-path ... <experiment>`."""
    return [
        chaos, "--log-file", str(run_dir / "chaos.log"),
        "run", *chaos_args, "--journal-path", str(run_dir / "journal.json"), str(experiment),
    ]  # fmt: skip


def progress_reporter(
    run_dir: Path, experiment: Path, prefix: str, echo: Callable[[str], None]
) -> Callable[[], None]:
    """A function that, each time it is called, echoes `<prefix> — <phase>` for every new
    phase the run's chaos.log shows since the last call."""
    follower = LogFollower(run_dir / "chaos.log")
    tracker = PhaseTracker(load_action_names(experiment))

    def tick() -> None:
        for line in follower.new_lines():
            phase = tracker.feed(line)
            if phase is not None:
                echo(f"{prefix} — {phase}")

    return tick


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
    with _Interrupts() as interrupts:
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
                unsteady, held_by = _await_steady(
                    options.state_dir,
                    state,
                    STEADY_TIMEOUT_SECONDS,
                    interrupts,
                    alerts=not _declares_steady_gate(run.experiment),
                )
                waited = time.monotonic() - waited
                if unsteady is None and held_by and waited >= STEADY_NOTE_SECONDS:
                    # where suite time goes: a stack that takes long to settle says why
                    echo(f"-- steady after {waited:.0f} s (waited for: {held_by})")
                if unsteady is not None:
                    # a fault injected into a stack that is already degraded proves nothing
                    summary = _not_run(
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
                summary = _run_one(
                    run, result.suite_id, run_dir, chaos, env, interrupts, options, prefix
                )
                result.summaries.append(summary)
                echo(f"{prefix.split(' ', 1)[0]} {summary_line(summary)}")
        finally:
            _close_suite(result, interrupts, options)
            _leave_stack(options, found_profile)
    result.seconds = time.monotonic() - started
    return result


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
    with _Interrupts() as interrupts:
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
                alerts = not _declares_steady_gate(run.experiment)
                waited = time.monotonic()
                unsteady, held_by = _poll_steady(
                    partial(cluster_unsteady_reason, driver, prom, config.kube_namespace, alerts),
                    STEADY_TIMEOUT_SECONDS,
                    interrupts,
                )
                waited = time.monotonic() - waited
                if unsteady is None and held_by and waited >= STEADY_NOTE_SECONDS:
                    echo(f"-- steady after {waited:.0f} s (waited for: {held_by})")
                if unsteady is not None:
                    summary = _not_run(
                        run,
                        run_dir,
                        result.suite_id,
                        f"The cluster was not steady after {STEADY_TIMEOUT_SECONDS:.0f} s "
                        f"({unsteady}), so no fault was injected.",
                        Verdict.NOT_JUDGED,
                    )
                else:
                    env = cluster_env(run, run_dir, prometheus_url, options)
                    summary = _run_one(
                        run, result.suite_id, run_dir, chaos, env, interrupts, options, prefix
                    )
                result.summaries.append(summary)
                echo(f"{prefix.split(' ', 1)[0]} {summary_line(summary)}")
        finally:
            _close_suite(result, interrupts, options)
    result.seconds = time.monotonic() - started
    return result


def _close_suite(result: SuiteResult, interrupts: _Interrupts, options: SuiteOptions) -> None:
    """What every suite does on its way out, interrupted or not: note the interruption and
    write the index and JUnit over what ran."""
    result.interrupted = interrupts.fired
    if result.summaries:
        index = build_index(options.reports_dir, suite_id=result.suite_id)
        result.index_html, result.junit_xml = index.index_html, index.junit_xml


def cluster_env(
    run: PlannedRun, run_dir: Path, prometheus_url: str, options: SuiteOptions
) -> dict[str, str]:
    """The environment of one `chaos run` on a cluster: the caller's (kubeconfig, HELIUS_KUBE_*
    allow-lists...), the target, the run directory, the Prometheus the report asks, and the
    safeguards as on the local target."""
    env = {
        **os.environ,
        "HELIUS_TARGET": "kubernetes",
        "HELIUS_RUN_DIR": str(run_dir.resolve()),
        "HELIUS_PROMETHEUS_URL": prometheus_url,
    }
    if not options.safeguards:
        env[SAFEGUARDS_ENV] = "off"
    else:
        env.pop(SAFEGUARDS_ENV, None)
    return env


def _run_one(
    run: PlannedRun,
    suite_id: str,
    run_dir: Path,
    chaos: str,
    env: dict[str, str],
    interrupts: _Interrupts,
    options: SuiteOptions,
    prefix: str,
) -> RunSummary:
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_meta(run_dir, run, suite_id)
    prometheus_url = env["HELIUS_PROMETHEUS_URL"]
    argv = chaos_argv(chaos, run_dir, run.experiment, options.chaos_args)
    tick = (
        progress_reporter(run_dir, run.experiment, prefix, options.echo)
        if options.progress
        else None
    )
    with (run_dir / "chaos.out").open("wb") as out:
        process = subprocess.Popen(  # noqa: S603  argv list, no shell: chaos CLI
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # our signal handler decides what reaches it
        )
        interrupts.child = process
        try:
            _wait(process, interrupts, tick)
        finally:
            interrupts.child = None
    if tick is not None:
        tick()
        options.echo(f"{prefix} — building the report")
    try:
        return build_run_report(run_dir, prometheus_url).summary
    except Exception as exc:  # a report bug must not lose the suite: record it as a failed run
        return _unreported(run, run_dir, suite_id, exc)


def chaos_env(
    run: PlannedRun,
    run_dir: Path,
    ports: dict[str, int],
    options: SuiteOptions,
    token: str = "",
) -> dict[str, str]:
    """The environment of one `chaos run`: the stack's endpoints, the run directory, and
    the safeguards switched off for negative controls (or `--no-safeguards`)."""
    env = {
        **os.environ,
        "HELIUS_TARGET": "local",
        "HELIUS_RUN_DIR": str(run_dir.resolve()),
        "HELIUS_CONTROL_URL": f"http://127.0.0.1:{ports['control']}",
        "HELIUS_PROMETHEUS_URL": f"http://127.0.0.1:{ports['prometheus']}",
        "HELIUS_RECO_URL": f"http://127.0.0.1:{ports['reco_service']}",
        "HELIUS_MLFLOW_URL": f"http://127.0.0.1:{ports['mlflow_service']}",
        "HELIUS_LOADGEN_METRICS_PORT": str(ports["loadgen"]),
    }
    if token:
        env[auth.TOKEN_ENV] = token  # the environment of a process is readable by its user only
    if run.profile is not None or not options.safeguards:
        # a negative control's fragile variant is meant to hurt the clients until the
        # hypothesis sees it: a stop condition would turn its deviation into an abort
        env[SAFEGUARDS_ENV] = "off"
    else:
        env.pop(SAFEGUARDS_ENV, None)
    return env


def _unreported(run: PlannedRun, run_dir: Path, suite_id: str, exc: Exception) -> RunSummary:
    """The summary of a run whose report could not be built (the journal is still on disk)."""
    reason = f"the report could not be built ({type(exc).__name__}: {exc}); see {run_dir}"
    return _not_run(run, run_dir, suite_id, reason)


def _not_run(
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


def _declares_steady_gate(experiment: Path) -> bool:
    try:
        declared = json.loads(experiment.read_text(encoding="utf-8")).get("controls") or []
    except (OSError, ValueError, AttributeError):
        return False
    return any(
        isinstance(c, dict) and (c.get("provider") or {}).get("module") == steady_gate.MODULE
        for c in declared
    )


def _await_steady(
    state_dir: Path,
    state: dict[str, Any],
    timeout: float,
    interrupts: _Interrupts,
    *,
    alerts: bool = True,
) -> tuple[str | None, str]:
    """Wait until the stack is steady: every pod ready, no fault active, every recommender
    seen by Prometheus out of fallback, no alert firing (unless `alerts` is off: the
    experiment's steady gate checks them when its fault is due), and a prediction through the
    service answering 200. Returns (None when steady else why not, the reasons it waited for)."""
    ports = state["ports"]
    predict = f"http://127.0.0.1:{ports['reco_service']}/predict"
    prom = PrometheusAPI(f"http://127.0.0.1:{ports['prometheus']}", 5.0)
    control = ControlClient.for_state_dir(state_dir, timeout=5)
    with control, httpx.Client(timeout=5) as client:
        return _poll_steady(
            lambda: _unsteady_reason(control, client, predict, prom, alerts), timeout, interrupts
        )


def _poll_steady(
    reason: Callable[[], str | None], timeout: float, interrupts: _Interrupts
) -> tuple[str | None, str]:
    """Ask `reason` every second until it says None (steady) or `timeout` passes. Returns
    (None when steady else why not, the reasons it waited for)."""
    deadline = time.monotonic() + timeout
    why = "not checked"
    seen: list[str] = []
    while not interrupts.fired:
        why = reason() or ""
        if not why:
            return None, "; ".join(seen)
        if why not in seen:
            seen.append(why)
        if time.monotonic() >= deadline:
            return why, "; ".join(seen)
        time.sleep(1.0)
    return why or "interrupted", "; ".join(seen)


def _unsteady_reason(
    control: ControlClient,
    client: httpx.Client,
    predict: str,
    prom: PrometheusAPI,
    alerts: bool = True,
) -> str | None:
    try:
        status = api.Status.model_validate(control.status())
        not_ready = sorted(p.name for p in status.pods if not p.ready)
        if not_ready:
            return f"pods not ready: {not_ready}"
        if status.faults:
            return f"faults still active: {[f.id for f in status.faults]}"
        reco = sum(1 for p in status.pods if p.app == App.RECO.value)
        confirmed = prom.instant_value(f"count({FALLBACK_GAUGE} == 0)") or 0
        if confirmed < reco:
            return f"{confirmed:.0f} of {reco} recommenders seen out of fallback by Prometheus"
        firing = steady_gate.unsteady_reason(prom, NAMESPACE) if alerts else None
        if firing:
            return firing
        answer = client.post(predict, json={"user_id": "steady-check", "k": 3})
        if answer.status_code != 200:
            return f"a prediction through the service answered HTTP {answer.status_code}"
    except (StackError, httpx.HTTPError, ValueError, KeyError, PromAPIError) as exc:
        return f"the stack did not answer ({type(exc).__name__}: {exc})"
    return None


def _wait(
    process: subprocess.Popen[bytes],
    interrupts: _Interrupts,
    tick: Callable[[], None] | None = None,
) -> None:
    while process.poll() is None:
        if tick is not None:
            tick()
        if interrupts.fired:
            try:
                process.wait(CHAOS_STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            return
        time.sleep(0.2)


def _write_meta(run_dir: Path, run: PlannedRun, suite_id: str) -> None:
    meta = {
        "experiment": run.key,
        "experiment_file": str(run.experiment),
        "variant": run.variant,
        "expected_verdict": str(run.expected),
        "expected_failing_probe": run.expected_probes[0] if run.expected_probes else None,
        "expected_failing_probes": list(run.expected_probes),
        "suite_id": suite_id,
    }
    (run_dir / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")


def _leave_stack(options: SuiteOptions, found: StackConfig | None) -> None:
    """Leave the stack as found: down if we started it, else back on its own profile."""
    if options.keep_stack:
        return
    if found is None:
        lifecycle.down(options.state_dir)
    else:
        lifecycle.up(options.state_dir, options.base_port, found, restart=True)


class _Interrupts:
    """SIGTERM/SIGINT: forward SIGTERM to the running `chaos` once, remember it happened."""

    def __init__(self) -> None:
        self.fired = False
        self.child: subprocess.Popen[bytes] | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.fired = True
        child = self.child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    def __enter__(self) -> _Interrupts:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
