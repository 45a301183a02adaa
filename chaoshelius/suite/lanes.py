"""Several runs at once, each lane on its own local stack (`suite run --lanes N`).

A run is judged against the stack it ran on, so lanes never share one: lane 1 is the suite's
stack (`--state-dir`, `--base-port`), lane n its own beside it (`<state-dir>-lane<n>`, the base
port + 500 x (n - 1)). The runs are grouped by stack profile (a negative control's fragile
variant); a lane takes the next group when it is free, so the lanes stay busy whatever each run
costs, and the groups that restart a whole stack stay last.

Runs marked `solo` (negative controls whose verdict rests on latency: another lane's load on
the same cores moves latency too, and could make a control "deviate" for the wrong reason) go
first, in lane 1, before any other lane's stack exists; then every lane shares the rest. So
lane 1 also brings its stack up first (the pods' environments are built once, not raced).

What it costs: the lanes share the machine. A deviation is only the defect's if a healthy run
in a lane passes too (docs/experiments.md, "Lanes", gives the healthy runs measured this way);
the suite the users' verdict rests on (`nox -s chaos`) runs in one lane.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from chaoshelius.report.model import RunSummary
from chaoshelius.suite.interrupts import Interrupts
from chaoshelius.suite.model import PlannedRun, SuiteOptions
from chaoshelius.suite.targets import LocalStack, SuiteTarget

__all__ = ["LANE_PORT_SPAN", "MAX_LANES", "lane_options", "profile_groups", "run_lanes"]

LANE_PORT_SPAN = 500  # a stack's ports span base .. base + 433 (chaoshelius.stack.ports)
MAX_LANES = 4

Positioned = tuple[int, PlannedRun]  # 1-based position in the plan, the run
# (position, run, the lane's target, the lane's options, "lane n") -> the run's summary
RunOne = Callable[[int, PlannedRun, SuiteTarget, SuiteOptions, str], RunSummary]


def lane_options(options: SuiteOptions, lane: int) -> SuiteOptions:
    """Lane `lane` (1-based)'s options: lane 1 the suite's own stack, the others beside it."""
    if lane == 1:
        return options
    state = options.state_dir
    return replace(
        options,
        state_dir=state.with_name(f"{state.name}-lane{lane}"),
        base_port=options.base_port + LANE_PORT_SPAN * (lane - 1),
    )


def profile_groups(runs: Sequence[PlannedRun]) -> list[list[Positioned]]:
    """Consecutive runs of one negative profile as one group (one stack change), in plan order;
    runs on the shipped stack (no profile) one group each."""
    groups: list[list[Positioned]] = []
    previous: Path | None = None
    for position, run in enumerate(runs, start=1):
        if groups and run.profile is not None and run.profile == previous:
            groups[-1].append((position, run))
        else:
            groups.append([(position, run)])
        previous = run.profile
    return groups


def run_lanes(
    runs: Sequence[PlannedRun],
    options: SuiteOptions,
    lanes: int,
    interrupts: Interrupts,
    run_one: RunOne,
    make_target: Callable[[SuiteOptions], SuiteTarget] = LocalStack,
    refused: Callable[[RunSummary], bool] = lambda summary: False,
) -> tuple[dict[int, RunSummary], BaseException | None]:
    """Run `runs` in `lanes` threads, each on its own local stack; the summaries by plan
    position, and the first error a lane met (the other lanes finish their current run and
    stop). The caller's thread only waits (signals reach it) and leaves each stack as found.

    A run shared with other lanes that `refused` says was turned away unsteady (the steady
    gate: no fault injected, nothing judged; e.g. the latency alert firing while the other
    lane's stack starts) runs once more at the end, in lane 1 alone, once the other lanes are
    done: its summary replaces the refused one."""
    groups = profile_groups(runs)
    solo: deque[list[Positioned]] = deque(g for g in groups if any(r.solo for _, r in g))
    shared: deque[list[Positioned]] = deque(g for g in groups if not any(r.solo for _, r in g))
    lock = threading.Lock()
    summaries: dict[int, RunSummary] = {}
    errors: list[BaseException] = []
    alone_done = threading.Event()  # lane 1 ran the solo runs: the other lanes may start
    stop = threading.Event()
    again: deque[list[Positioned]] = deque()  # refused while shared: once more, alone
    others_left = threading.Semaphore(0)  # one release per other lane that has left its stack

    def next_group(queue: deque[list[Positioned]]) -> list[Positioned] | None:
        with lock:
            return queue.popleft() if queue and not stop.is_set() else None

    def run_groups(queue: deque[list[Positioned]], target: SuiteTarget, mine: SuiteOptions,
                   number: int) -> None:  # fmt: skip
        while not interrupts.fired and (group := next_group(queue)) is not None:
            for position, run in group:
                if interrupts.fired or stop.is_set():
                    return
                label = f"lane {number}" + (", alone, again" if queue is again else "")
                summary = run_one(position, run, target, mine, label)
                with lock:
                    summaries[position] = summary
                    if queue is shared and refused(summary):
                        again.append([(position, run)])

    def lane(number: int) -> None:
        mine = lane_options(options, number)
        target = make_target(mine)
        try:
            if number == 1:
                # first and alone: the runs judged on latency, while no other stack exists
                # (lane 1's first start also builds the pods' environments, once)
                run_groups(solo, target, mine, number)
                with lock:
                    first = shared[0][0][1] if shared and not solo else None
                if first is not None and not interrupts.fired:
                    target.prepare(first)  # up before the others start theirs
                alone_done.set()
            alone_done.wait()
            run_groups(shared, target, mine, number)
            if number == 1:
                for _ in range(lanes - 1):  # the other lanes' stacks are down: alone again
                    others_left.acquire()
                run_groups(again, target, mine, number)
        except BaseException as exc:  # noqa: BLE001  handed to the caller's thread
            with lock:
                errors.append(exc)
            stop.set()
        finally:
            alone_done.set()
            try:
                target.leave()
            except BaseException as exc:  # noqa: BLE001
                with lock:
                    errors.append(exc)
            if number != 1:
                others_left.release()

    threads = [
        threading.Thread(target=lane, args=(n,), name=f"helius-lane-{n}", daemon=True)
        for n in range(1, lanes + 1)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)  # short joins: SIGINT/SIGTERM reach the main thread's handler
    return summaries, (errors[0] if errors else None)
