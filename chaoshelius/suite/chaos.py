"""One experiment as a `chaos run` subprocess: its options, command line, environment, meta.json,
progress lines, and the run's report once it ends."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from chaoshelius.report import build_run_report
from chaoshelius.report.model import RunSummary
from chaoshelius.stack import auth
from chaoshelius.suite.interrupts import Interrupts, wait_for_chaos
from chaoshelius.suite.model import PlannedRun, SuiteError, SuiteOptions
from chaoshelius.suite.progress import LogFollower, PhaseTracker, load_action_names
from chaoshelius.suite.results import unreported
from chaoshelius.topology import Target

__all__ = [
    "DRY_MODES",
    "HYPOTHESIS_STRATEGIES",
    "SAFEGUARDS_ENV",
    "chaos_argv",
    "chaos_env",
    "chaos_run_args",
    "cluster_env",
    "progress_reporter",
    "run_one",
    "write_meta",
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


def cluster_env(
    run: PlannedRun, run_dir: Path, prometheus_url: str, options: SuiteOptions
) -> dict[str, str]:
    """The environment of one `chaos run` on a cluster: the caller's (kubeconfig, HELIUS_KUBE_*
    allow-lists...), the target, the run directory, the Prometheus the report asks, and the
    safeguards as on the local target."""
    env = {
        **os.environ,
        "HELIUS_TARGET": Target.KUBERNETES.value,
        "HELIUS_RUN_DIR": str(run_dir.resolve()),
        "HELIUS_PROMETHEUS_URL": prometheus_url,
    }
    if not options.safeguards:
        env[SAFEGUARDS_ENV] = "off"
    else:
        env.pop(SAFEGUARDS_ENV, None)
    return env


def run_one(
    run: PlannedRun,
    suite_id: str,
    run_dir: Path,
    chaos: str,
    env: dict[str, str],
    interrupts: Interrupts,
    options: SuiteOptions,
    prefix: str,
) -> RunSummary:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_meta(run_dir, run, suite_id)
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
        interrupts.add(process)
        try:
            wait_for_chaos(process, interrupts, tick)
        finally:
            interrupts.discard(process)
    if tick is not None:
        tick()
        options.echo(f"{prefix} — building the report")
    try:
        return build_run_report(run_dir, prometheus_url).summary
    except Exception as exc:  # a report bug must not lose the suite: record it as a failed run
        return unreported(run, run_dir, suite_id, exc)


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
        "HELIUS_TARGET": Target.LOCAL.value,
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


def write_meta(run_dir: Path, run: PlannedRun, suite_id: str) -> None:
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
