"""`suite run --lanes N` (chaoshelius.suite.lanes): the runs split over lanes, each on its own
stack. The scheduling is tested here with fake targets (a lane's real stack is the same
LocalStack the one-lane suite uses, exercised by `nox -s negative`, which runs in two lanes);
the interruption with real child processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from chaoshelius.report.model import Kpis, RunSummary, Verdict
from chaoshelius.suite import PlannedRun, SuiteOptions
from chaoshelius.suite.interrupts import Interrupts
from chaoshelius.suite.lanes import LANE_PORT_SPAN, lane_options, profile_groups, run_lanes
from chaoshelius.suite.targets import SuiteTarget

EXPERIMENTS = Path(__file__).parents[2] / "experiments"
PROFILES = Path(__file__).parents[2] / "chaoshelius" / "negative" / "profiles"
EXPERIMENT = EXPERIMENTS / "rds-path-cut.json"


def _runs(*profiles: str | None) -> list[PlannedRun]:
    return [
        PlannedRun(EXPERIMENT, None if p is None else PROFILES / f"{p}.yml", repeat=n)
        for n, p in enumerate(profiles, start=1)
    ]


def _summary(run: PlannedRun) -> RunSummary:
    return RunSummary(
        run_id=run.run_id("s"), experiment_key=run.key, experiment_title=run.key,
        verdict=Verdict.PASSED, reason="", status="completed", deviated=False,
        started_at=None, ended_at=None, duration_s=None, failing_probe=None, kpis=Kpis(),
    )  # fmt: skip


class Recorder:
    """Fake lane targets that log what each lane did, in order, across threads."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def target(self, options: SuiteOptions) -> SuiteTarget:
        recorder, lane = self, str(options.base_port)

        class Fake:
            noun = "stack"

            def begin(self) -> None: ...

            def prepare(self, run: PlannedRun) -> None:
                recorder.note(lane, f"prepare {run.profile.stem if run.profile else '-'}")

            def unsteady(self, alerts: bool, interrupts: Interrupts) -> tuple[None, str]:
                return None, ""

            def env(self, run: PlannedRun, run_dir: Path) -> dict[str, str]:
                return {}

            def leave(self) -> None:
                recorder.note(lane, "leave")

        return Fake()

    def note(self, lane: str, what: str) -> None:
        with self.lock:
            self.log.append((lane, what))


def test_lane_one_is_the_suites_stack_and_the_others_sit_beside_it(tmp_path: Path) -> None:
    options = SuiteOptions(state_dir=tmp_path / "stack", base_port=21000)
    assert lane_options(options, 1) is options
    second = lane_options(options, 2)
    assert second.state_dir == tmp_path / "stack-lane2"
    assert second.base_port == 21000 + LANE_PORT_SPAN
    assert lane_options(options, 3).base_port == 21000 + 2 * LANE_PORT_SPAN


def test_runs_of_one_profile_stay_together_and_plain_runs_split() -> None:
    runs = _runs("lying-pod", "lying-pod", "slow-start", None, None)
    groups = [[position for position, _ in group] for group in profile_groups(runs)]
    assert groups == [[1, 2], [3], [4], [5]]


def test_every_run_runs_once_in_lanes_and_lane_one_comes_up_first() -> None:
    """Two lanes over six runs: each run exactly once, a profile's runs in one lane (one
    stack change), both lanes busy, lane 2 prepares nothing before lane 1's stack is up, and
    every lane leaves its stack."""
    recorder = Recorder()
    runs = _runs("lying-pod", "lying-pod", "slow-start", "page-tokens", "page-tokens", None)
    ran: dict[int, str] = {}

    def one(
        position: int, run: PlannedRun, target: SuiteTarget, mine: SuiteOptions, lane: str
    ) -> RunSummary:
        target.prepare(run)
        ran[position] = lane
        time.sleep(0.05)
        return _summary(run)

    with Interrupts() as interrupts:
        summaries, error = run_lanes(
            runs, SuiteOptions(base_port=21000), 2, interrupts, one, recorder.target
        )
    assert error is None
    assert sorted(summaries) == [1, 2, 3, 4, 5, 6]
    assert ran[1] == ran[2] and ran[4] == ran[5]
    assert set(ran.values()) == {"lane 1", "lane 2"}
    assert recorder.log[0] == ("21000", "prepare lying-pod")
    assert sorted(lane for lane, what in recorder.log if what == "leave") == ["21000", "21500"]


def test_an_error_in_one_lane_stops_the_others_after_their_current_run() -> None:
    recorder = Recorder()
    runs = _runs(*[None] * 8)
    started: list[int] = []

    def one(
        position: int, run: PlannedRun, target: SuiteTarget, mine: SuiteOptions, lane: str
    ) -> RunSummary:
        started.append(position)
        if position == 2:
            raise RuntimeError("the stack did not come up")
        time.sleep(0.2)
        return _summary(run)

    with Interrupts() as interrupts:
        summaries, error = run_lanes(
            runs, SuiteOptions(base_port=21000), 2, interrupts, one, recorder.target
        )
    assert isinstance(error, RuntimeError)
    assert len(started) <= 3, started  # no new run after the error
    assert 2 not in summaries and len(summaries) < 8
    assert sorted(lane for lane, what in recorder.log if what == "leave") == ["21000", "21500"]


@pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals")
def test_an_interruption_reaches_every_lanes_chaos_run() -> None:
    """Ctrl-C with two lanes running: both `chaos` processes get SIGTERM (they play their
    rollbacks), not only the last one started. Real child processes."""
    children = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # noqa: S603
        for _ in range(2)
    ]
    try:
        with Interrupts() as interrupts:
            for child in children:
                interrupts.add(child)
            signal.raise_signal(signal.SIGINT)
            codes = [child.wait(10) for child in children]
        assert interrupts.fired
        assert codes == [-signal.SIGTERM, -signal.SIGTERM]
        late = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # noqa: S603
        interrupts.add(late)  # started after the interruption: stopped at once
        assert late.wait(10) == -signal.SIGTERM
    finally:
        for child in children:
            child.kill()


def test_runs_judged_on_latency_run_first_and_alone() -> None:
    """A control expected to fail a latency check runs in lane 1 before any other lane's
    stack exists: another lane's load on the same two cores moves latency too, so a 'deviation'
    beside it could be the neighbour's. The plan marks them (the control's expected probe
    is a latency function)."""
    recorder = Recorder()
    runs = [
        replace(run, solo=run.profile is not None and run.profile.stem.startswith("slow"))
        for run in _runs("lying-pod", "slow-fallback", "slow-everywhere", "page-tokens", None)
    ]
    events: list[tuple[str, int]] = []

    def one(
        position: int, run: PlannedRun, target: SuiteTarget, mine: SuiteOptions, lane: str
    ) -> RunSummary:
        target.prepare(run)
        recorder.note(lane, f"run {position}")
        events.append((lane, position))
        time.sleep(0.05)
        return _summary(run)

    with Interrupts() as interrupts:
        summaries, error = run_lanes(
            runs, SuiteOptions(base_port=21000), 2, interrupts, one, recorder.target
        )
    assert error is None and sorted(summaries) == [1, 2, 3, 4, 5]
    assert events[:2] == [("lane 1", 2), ("lane 1", 3)]
    first_lane2 = next(i for i, (lane, _) in enumerate(recorder.log) if lane == "21500")
    solo_done = max(i for i, entry in enumerate(recorder.log) if entry[1] in ("run 2", "run 3"))
    assert first_lane2 > solo_done, recorder.log


def test_the_plan_marks_latency_controls_solo() -> None:
    from chaoshelius.suite.plan import plan

    runs = {r.profile.stem: r.solo for r in plan(EXPERIMENTS, negative=True) if r.profile}
    assert runs["slow-fallback"] and runs["slow-everywhere"]  # client latency SLO
    assert runs["one-pod-fallback-errors"]  # the per-pod SLO judges latency too
    assert not runs["lying-pod"] and not runs["page-tokens"]


def test_a_run_refused_beside_another_lane_runs_again_alone_at_the_end() -> None:
    """The steady gate turned a shared run away (nothing injected; e.g. the latency alert
    firing while the other lane's stack started): it runs once more in lane 1 after the other
    lanes have left their stacks, and that summary is the run's. Solo runs are not retried."""
    recorder = Recorder()
    runs = _runs("lying-pod", "page-tokens", "slow-start", "swallowed-errors")
    attempts: dict[int, int] = {}

    def one(
        position: int, run: PlannedRun, target: SuiteTarget, mine: SuiteOptions, lane: str
    ) -> RunSummary:
        attempts[position] = attempts.get(position, 0) + 1
        recorder.note(lane, f"run {position}")
        time.sleep(0.05)
        refused = position == 2 and attempts[position] == 1
        return replace(_summary(run), verdict=Verdict.NOT_JUDGED if refused else Verdict.PASSED)

    with Interrupts() as interrupts:
        summaries, error = run_lanes(
            runs, SuiteOptions(base_port=21000), 2, interrupts, one, recorder.target,
            refused=lambda s: s.verdict is Verdict.NOT_JUDGED,
        )  # fmt: skip
    assert error is None
    assert attempts == {1: 1, 2: 2, 3: 1, 4: 1}
    assert summaries[2].verdict is Verdict.PASSED
    again = recorder.log.index(("lane 1, alone, again", "run 2"))
    assert ("21500", "leave") in recorder.log[:again], recorder.log
    assert recorder.log[-1] == ("21000", "leave")
