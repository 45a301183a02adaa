"""Which runs a suite makes: the catalogue (or `--only`), validated, or its negative controls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from chaoshelius.negative import load_controls
from chaoshelius.negative.controls import LATENCY_FUNCTIONS
from chaoshelius.negative.coverage import settings_used
from chaoshelius.report.model import Verdict
from chaoshelius.stack.config import StackConfig
from chaoshelius.suite.model import PlannedRun, SuiteError

__all__ = ["plan"]


def plan(
    experiments_dir: Path,
    only: Sequence[str] = (),
    negative: bool = False,
    repeat: int = 1,
    controls: Sequence[str] = (),
) -> list[PlannedRun]:
    """The runs of the catalogue (or of `only`), in file order; negatives grouped by profile,
    only those of the `controls` profiles when named. With `repeat` N > 1, each run N times in
    a row (a false-alarm campaign), numbered."""
    if repeat < 1:
        raise SuiteError(f"--repeat {repeat}: at least 1")
    if controls and not negative:
        raise SuiteError("--control names negative controls: add --negative")
    once = _plan_once(experiments_dir, only, negative)
    if controls:
        once = _only_controls(once, controls)
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
    functions = {key: function for key, (function, _) in settings_used(experiments_dir).items()}
    runs = [
        PlannedRun(
            by_stem[c.experiment],
            c.profile_file,
            Verdict.DEVIATED,
            c.probes,
            solo=any(functions.get((c.experiment, p)) in LATENCY_FUNCTIONS for p in c.probes),
        )
        for c in controls
    ]
    # one profile change per profile; those the running stack can swap in place (recommender
    # pods only) first, the few that restart the whole stack last (one restart, not two each)
    return sorted(runs, key=lambda r: (_needs_restart(r.profile), str(r.profile), r.key))


def _only_controls(runs: list[PlannedRun], names: Sequence[str]) -> list[PlannedRun]:
    """The negative runs whose profile is one of `names` (a typo: one line naming the known)."""
    known = sorted({run.profile.stem for run in runs if run.profile is not None})
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SuiteError(f"unknown negative control(s) {unknown}; known: {known}")
    return [run for run in runs if run.profile is not None and run.profile.stem in names]


def _needs_restart(profile: Path | None) -> bool:
    if profile is None:
        return False
    return not StackConfig().swappable_to(StackConfig.load(profile))


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
