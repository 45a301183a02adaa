"""Run the experiment catalogue with the real `chaos` CLI, one run directory per experiment.

For each planned run: write `meta.json`, run `chaos run --journal-path ...` in its own process
group (so a Ctrl-C reaches it once, through us), build the run's HTML report, print one line.
At the end: `reports/index.html` and `reports/junit.xml`. The local stack is brought up (with
the profile a run needs) and left as it was found.

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
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from chaoshelius.exceptions import HeliusError
from chaoshelius.negative import load_controls
from chaoshelius.report import build_index, build_run_report
from chaoshelius.report.model import Kpis, RunSummary, Verdict
from chaoshelius.stack import api_models as api
from chaoshelius.stack import auth, lifecycle
from chaoshelius.stack.client import ControlClient
from chaoshelius.stack.config import StackConfig
from chaoshelius.stack.errors import StackError
from chaoshelius.stack.state import StackPaths

__all__ = [
    "PlannedRun",
    "SuiteError",
    "SuiteOptions",
    "SuiteResult",
    "plan",
    "run_suite",
    "summary_line",
]

INTERRUPTED_EXIT = 130
CHAOS_STOP_GRACE_SECONDS = 120.0  # rollbacks + after-hypothesis queries, then SIGKILL
STEADY_TIMEOUT_SECONDS = 120.0  # before each run: the previous one's recovery to settle


class SuiteError(HeliusError):
    """The suite cannot start (no experiments, unknown name, `chaos` not installed...)."""


@dataclass(frozen=True)
class PlannedRun:
    experiment: Path
    profile: Path | None = None  # stack profile; None = the shipped default
    expected: Verdict = Verdict.PASSED
    expected_probe: str | None = None  # negative controls: the probe that must fail

    @property
    def key(self) -> str:
        return self.experiment.stem

    @property
    def variant(self) -> str | None:
        return None if self.profile is None else f"negative:{self.profile.stem}"

    def run_id(self, suite_id: str) -> str:
        suffix = "" if self.profile is None else f"--{self.profile.stem}"
        return f"{suite_id}-{self.key}{suffix}"


@dataclass(frozen=True)
class SuiteOptions:
    reports_dir: Path = Path("reports")
    state_dir: Path = Path(".helius") / "stack"
    base_port: int = 17000
    keep_stack: bool = False
    echo: Callable[[str], None] = print


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
    experiments_dir: Path, only: Sequence[str] = (), negative: bool = False
) -> list[PlannedRun]:
    """The runs of the catalogue (or of `only`), in file order; negatives grouped by profile."""
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
    controls = load_controls()
    missing = [f.stem for f in chosen if f.stem not in controls]
    if missing:
        raise SuiteError(f"no negative control for {missing}; add them to chaoshelius/negative/")
    runs = [
        PlannedRun(
            f,
            controls[f.stem].profile_file,
            Verdict.DEVIATED,
            controls[f.stem].probe,
        )
        for f in chosen
    ]
    return sorted(runs, key=lambda r: (str(r.profile), r.key))  # one stack restart per profile


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


def run_suite(runs: Sequence[PlannedRun], options: SuiteOptions) -> SuiteResult:
    """Run `runs` against the local stack; see the module docstring."""
    chaos = shutil.which("chaos") or str(Path(sys.executable).with_name("chaos"))
    if not Path(chaos).exists():
        raise SuiteError("the `chaos` CLI is not installed: pip install chaostoolkit")
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
            for run in runs:
                if interrupts.fired:
                    break
                if state is None or run.profile != current:
                    config = StackConfig.load(run.profile) if run.profile else StackConfig()
                    echo(f"-- local stack, profile {config.name!r}: starting (if needed)")
                    up = lifecycle.up(options.state_dir, options.base_port, config, restart=True)
                    state, current = up.state, run.profile
                if not _await_steady(options.state_dir, state, STEADY_TIMEOUT_SECONDS, interrupts):
                    echo(
                        f"warning: the stack is not steady after {STEADY_TIMEOUT_SECONDS:.0f} s "
                        f"(pods not ready, a fault active, or a recommender in fallback); "
                        f"running {run.key} anyway: its steady-state hypothesis will judge"
                    )
                token = auth.find_token(paths.root) or ""
                summary = _run_one(run, result.suite_id, runs_dir, chaos, state, token, interrupts)
                result.summaries.append(summary)
                echo(summary_line(summary))
        finally:
            result.interrupted = interrupts.fired
            if result.summaries:
                index = build_index(options.reports_dir, suite_id=result.suite_id)
                result.index_html, result.junit_xml = index.index_html, index.junit_xml
            _leave_stack(options, found_profile)
    result.seconds = time.monotonic() - started
    return result


def summary_line(s: RunSummary) -> str:
    """One line per run: name, verdict, expectation, duration and the KPIs that matter."""
    k = s.kpis
    name = s.experiment_key + (f" [{s.variant}]" if s.variant else "")
    mark = "ok  " if s.as_expected else "FAIL"
    parts = [
        f"{mark} {name:<48} {s.verdict!s:<11}",
        f"expected {s.expected_verdict}"
        + (f" on {s.expected_failing_probe}" if s.expected_failing_probe else ""),
        f"{s.duration_s or 0:.0f} s",
        f"availability {_num(k.availability_during_fault, '.4f')}",
        f"fallback {_num(k.time_to_fallback_s, '.1f', ' s')}",
        f"recover {_num(k.time_to_recover_s, '.1f', ' s')}",
        f"worst p99 {_num(k.worst_p99_s, '.3f', ' s')}",
        f"p99 during/before {_num(k.p99_ratio, '.2f', 'x')}",
    ]
    if s.failing_probe:
        parts.append(f"failing probe {s.failing_probe}")
    return "  ".join(parts)


def _num(value: float | None, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def _run_one(
    run: PlannedRun,
    suite_id: str,
    runs_dir: Path,
    chaos: str,
    state: dict[str, Any],
    token: str,
    interrupts: _Interrupts,
) -> RunSummary:
    run_dir = runs_dir / run.run_id(suite_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_meta(run_dir, run, suite_id)
    ports = state["ports"]
    prometheus_url = f"http://127.0.0.1:{ports['prometheus']}"
    env = {
        **os.environ,
        "HELIUS_TARGET": "local",
        "HELIUS_RUN_DIR": str(run_dir.resolve()),
        "HELIUS_CONTROL_URL": f"http://127.0.0.1:{ports['control']}",
        auth.TOKEN_ENV: token,  # the environment of a process is readable by its user only
        "HELIUS_PROMETHEUS_URL": prometheus_url,
        "HELIUS_RECO_URL": f"http://127.0.0.1:{ports['reco_service']}",
        "HELIUS_LOADGEN_METRICS_PORT": str(ports["loadgen"]),
    }
    argv = [
        chaos, "--log-file", str(run_dir / "chaos.log"),
        "run", "--journal-path", str(run_dir / "journal.json"), str(run.experiment),
    ]  # fmt: skip
    with (run_dir / "chaos.out").open("wb") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # our signal handler decides what reaches it
        )
        interrupts.child = process
        try:
            _wait(process, interrupts)
        finally:
            interrupts.child = None
    try:
        return build_run_report(run_dir, prometheus_url).summary
    except Exception as exc:  # a report bug must not lose the suite: record it as a failed run
        return _unreported(run, run_dir, suite_id, exc)


def _unreported(run: PlannedRun, run_dir: Path, suite_id: str, exc: Exception) -> RunSummary:
    """The summary of a run whose report could not be built (the journal is still on disk)."""
    reason = f"the report could not be built ({type(exc).__name__}: {exc}); see {run_dir}"
    summary = RunSummary(
        run_id=run_dir.name,
        experiment_key=run.key,
        experiment_title=run.key,
        verdict=Verdict.FAILED,
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
        expected_failing_probe=run.expected_probe,
    )
    (run_dir / "summary.json").write_text(json.dumps(summary.as_dict(), indent=2))
    return summary


def _await_steady(
    state_dir: Path, state: dict[str, Any], timeout: float, interrupts: _Interrupts
) -> bool:
    """Wait until every pod is ready, no fault is active and Prometheus sees every recommender
    out of fallback: what the previous experiment's recovery should have left."""
    ports = state["ports"]
    query = f"http://127.0.0.1:{ports['prometheus']}/api/v1/query"
    deadline = time.monotonic() + timeout
    control = ControlClient.for_state_dir(state_dir, timeout=5)
    with control, httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline and not interrupts.fired:
            try:
                status = api.Status.model_validate(control.status())
                reco = sum(1 for p in status.pods if p.app == "helius-reco")
                steady_pods = all(p.ready for p in status.pods) and not status.faults
                confirmed = client.get(
                    query, params={"query": "count(reco_engine_in_fallback_mode == 0)"}
                ).json()["data"]["result"]
                in_fallback = client.get(
                    query, params={"query": "count(reco_engine_in_fallback_mode == 1)"}
                ).json()["data"]["result"]
            except (StackError, httpx.HTTPError, ValueError, KeyError):
                steady_pods, confirmed, in_fallback, reco = False, [], [], 0
            if (
                steady_pods
                and confirmed
                and float(confirmed[0]["value"][1]) >= reco
                and not in_fallback
            ):
                return True
            time.sleep(1.0)
    return False


def _wait(process: subprocess.Popen[bytes], interrupts: _Interrupts) -> None:
    while process.poll() is None:
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
        "expected_failing_probe": run.expected_probe,
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
