"""The suite's one loop (chaoshelius.suite.runner) over any target, with a fake target: a
target that does not settle gets no `chaos run`, each of its runs is reported 'not judged'
with the reason, the index and JUnit are still written and the target is left; a suite
interrupted or stopped by an error records every planned run it did not start as 'not run'."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from chaoshelius.exceptions import HeliusError
from chaoshelius.report.model import Kpis, RunSummary, Verdict
from chaoshelius.suite import PlannedRun, SuiteOptions
from chaoshelius.suite.interrupts import Interrupts
from chaoshelius.suite.model import INTERRUPTED_EXIT
from chaoshelius.suite.results import tally
from chaoshelius.suite.runner import _run_all
from chaoshelius.suite.steady import STEADY_TIMEOUT_SECONDS

EXPERIMENTS = Path(__file__).parents[2] / "experiments"


class NeverSteady:
    noun = "cluster"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def begin(self) -> None:
        self.calls.append("begin")

    def prepare(self, run: PlannedRun) -> None:
        self.calls.append(f"prepare {run.key}")

    def unsteady(self, alerts: bool, interrupts: Interrupts) -> tuple[str | None, str]:
        self.calls.append(f"unsteady alerts={alerts}")
        return "pods not ready: ['mlflow-0']", "pods not ready: ['mlflow-0']"

    def env(self, run: PlannedRun, run_dir: Path) -> dict[str, str]:
        raise AssertionError("no chaos run on a target that is not steady")

    def leave(self) -> None:
        self.calls.append("leave")


def test_an_unsteady_target_gets_no_fault_and_a_not_judged_report(tmp_path: Path) -> None:
    lines: list[str] = []
    options = SuiteOptions(reports_dir=tmp_path / "reports", echo=lines.append, progress=True)
    runs = [PlannedRun(EXPERIMENTS / "mlflow-pod-kill.json", repeat=i) for i in (1, 2)]
    target = NeverSteady()

    result = _run_all(runs, options, "chaos-is-never-started", target)

    assert [s.verdict for s in result.summaries] == [Verdict.NOT_JUDGED] * 2
    assert result.summaries[0].reason == (
        f"The cluster was not steady after {STEADY_TIMEOUT_SECONDS:.0f} s "
        "(pods not ready: ['mlflow-0']), so no fault was injected."
    )
    assert result.exit_code == 1 and not result.interrupted
    assert result.index_html is not None and result.index_html.is_file()
    assert result.junit_xml is not None and result.junit_xml.is_file()
    assert target.calls[0] == "begin" and target.calls[-1] == "leave"
    assert "prepare mlflow-pod-kill" in target.calls
    assert lines[0] == "[1/2] mlflow-pod-kill #1 — waiting for a steady cluster"
    assert lines[1].startswith("[1/2] FAIL mlflow-pod-kill ")
    run_dirs = sorted(p.name for p in (tmp_path / "reports" / "runs").iterdir())
    assert run_dirs == [runs[0].run_id(result.suite_id), runs[1].run_id(result.suite_id)]


class InterruptedWhileWaiting(NeverSteady):
    """Ctrl-C while the first run waits for a steady target."""

    def unsteady(self, alerts: bool, interrupts: Interrupts) -> tuple[str | None, str]:
        interrupts.fired = True
        return super().unsteady(alerts, interrupts)


class BrokenOnSecond(NeverSteady):
    """The target cannot be readied for the second run (a stack that does not come up)."""

    def prepare(self, run: PlannedRun) -> None:
        super().prepare(run)
        if run.repeat == 2:
            raise HeliusError("the stack did not come up")


def test_an_interrupted_suite_lists_every_planned_run_that_did_not_run(tmp_path: Path) -> None:
    lines: list[str] = []
    options = SuiteOptions(reports_dir=tmp_path / "reports", echo=lines.append)
    runs = [PlannedRun(EXPERIMENTS / "mlflow-pod-kill.json", repeat=i) for i in (1, 2, 3)]

    result = _run_all(runs, options, "chaos-is-never-started", InterruptedWhileWaiting())

    assert result.interrupted and result.exit_code == INTERRUPTED_EXIT
    assert [s.verdict for s in result.summaries] == [
        Verdict.NOT_JUDGED,
        Verdict.NOT_RUN,
        Verdict.NOT_RUN,
    ]
    assert [s.run_id for s in result.summaries] == [r.run_id(result.suite_id) for r in runs]
    assert result.summaries[1].reason == "The suite was interrupted before this run started."
    assert [line.split()[:3] for line in lines[1:]] == [
        ["[2/3]", "FAIL", "mlflow-pod-kill"],
        ["[3/3]", "FAIL", "mlflow-pod-kill"],
    ]
    assert tally(result.summaries) == "0/3 as expected (1 not judged, 2 not run)"
    assert result.junit_xml is not None
    junit = ET.parse(result.junit_xml).getroot()  # noqa: S314  JUnit XML this test's own run wrote
    assert junit.get("tests") == "3" and junit.get("errors") == "2"
    assert junit.get("failures") == "1" and junit.get("skipped") == "0"


def test_a_suite_stopped_by_an_error_records_the_runs_it_did_not_start(tmp_path: Path) -> None:
    options = SuiteOptions(reports_dir=tmp_path / "reports", echo=[].append)
    runs = [PlannedRun(EXPERIMENTS / "mlflow-pod-kill.json", repeat=i) for i in (1, 2, 3)]
    result_dir = tmp_path / "reports" / "runs"

    with pytest.raises(HeliusError, match="did not come up"):
        _run_all(runs, options, "chaos-is-never-started", BrokenOnSecond())

    summaries = sorted(result_dir.glob("*/summary.json"))
    assert len(summaries) == 3
    verdicts = [json.loads(p.read_text())["verdict"] for p in summaries]
    assert verdicts == ["not judged", "not run", "not run"]
    reason = json.loads(summaries[1].read_text())["reason"]
    assert reason == (
        "The suite stopped before this run started (HeliusError: the stack did not come up)."
    )
    assert (tmp_path / "reports" / "junit.xml").is_file()


def test_the_tally_counts_each_kind_of_failure() -> None:
    def summary(verdict: Verdict, expected: Verdict = Verdict.PASSED) -> RunSummary:
        return RunSummary(
            "r", "e", "e", verdict, "why", None, False, None, None, None, None, Kpis(),
            expected_verdict=expected,
        )  # fmt: skip

    runs = [
        summary(Verdict.PASSED),
        summary(Verdict.DEVIATED, Verdict.DEVIATED),
        summary(Verdict.DEVIATED),
        summary(Verdict.NOT_JUDGED),
        summary(Verdict.NOT_JUDGED, Verdict.DEVIATED),  # a control that was not judged
        summary(Verdict.NOT_RUN),
    ]
    assert tally(runs) == "2/6 as expected (1 deviated, 2 not judged, 1 not run)"
    assert tally(runs[:2]) == "2/2 as expected"
    # nothing unjudged is as expected, whatever was expected of it
    assert not summary(Verdict.NOT_JUDGED, Verdict.NOT_JUDGED).as_expected
