"""The suite's one loop (chaoshelius.suite.runner) over any target, with a fake target: a
target that does not settle gets no `chaos run`, each of its runs is reported 'not judged'
with the reason, the index and JUnit are still written and the target is left."""

from __future__ import annotations

from pathlib import Path

from chaoshelius.report.model import Verdict
from chaoshelius.suite import PlannedRun, SuiteOptions
from chaoshelius.suite.interrupts import Interrupts
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
