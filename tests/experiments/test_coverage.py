"""The coverage table `--negative` prints: a probe function counts as covered only when a
control meant for it deviated with that probe among its failing ones."""

from __future__ import annotations

import json
from pathlib import Path

from chaoshelius.negative.coverage import coverage, render_coverage
from chaoshelius.report.model import Kpis, RunSummary, Verdict


def _summary(probes: tuple[str, ...], failing: tuple[str, ...]) -> RunSummary:
    return RunSummary(
        run_id="r",
        experiment_key="x",
        experiment_title="x",
        verdict=Verdict.DEVIATED,
        reason="",
        status="completed",
        deviated=True,
        started_at=None,
        ended_at=None,
        duration_s=None,
        failing_probe=failing[0] if failing else None,
        kpis=Kpis(),
        expected_verdict=Verdict.DEVIATED,
        variant="negative:p",
        expected_failing_probe=probes[0],
        expected_failing_probes=probes,
        failing_probes=failing,
    )


def _experiments(tmp_path: Path) -> Path:
    def probe(name: str, func: str) -> dict[str, object]:
        return {"name": name, "provider": {"module": "chaoshelius.slo.probes", "func": func}}

    hypothesis = {"probes": [probe("a", "alpha"), probe("b", "beta"), probe("c", "gamma")]}
    (tmp_path / "x.json").write_text(json.dumps({"steady-state-hypothesis": hypothesis}))
    return tmp_path


def test_a_function_is_covered_only_by_a_control_that_failed_on_it(tmp_path: Path) -> None:
    rows = coverage(
        [_summary(("a",), ("a", "c")), _summary(("b",), ("c",))], _experiments(tmp_path)
    )
    by_function = {row.function: row for row in rows}
    assert by_function["slo.probes.alpha"].covered
    assert not by_function["slo.probes.beta"].covered  # its control failed on another probe
    assert by_function["slo.probes.beta"].missed_by == ("x[negative:p]:b",)
    assert not by_function["slo.probes.gamma"].covered  # failed, but no control is meant for it
    table = render_coverage(rows)
    assert "NONE slo.probes.beta" in table and "ok   slo.probes.alpha" in table
