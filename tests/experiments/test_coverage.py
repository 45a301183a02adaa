"""The coverage table `--negative` prints: a (probe function, setting) pair counts as covered
only when a control meant for it deviated with that probe among its failing ones."""

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
    def probe(name: str, func: str, **args: object) -> dict[str, object]:
        provider = {"module": "chaoshelius.slo.probes", "func": func, "arguments": args}
        return {"name": name, "provider": provider}

    hypothesis = {
        "probes": [
            probe("a", "alpha", seconds=20, window_id="w"),
            probe("b", "beta"),
            probe("c", "gamma"),
            probe("d", "alpha", seconds=120, window_id="w"),
        ]
    }
    (tmp_path / "x.json").write_text(json.dumps({"steady-state-hypothesis": hypothesis}))
    return tmp_path


def test_a_function_is_covered_only_by_a_control_that_failed_on_it(tmp_path: Path) -> None:
    rows = coverage(
        [_summary(("a",), ("a", "c")), _summary(("b",), ("c",))], _experiments(tmp_path)
    )
    by_pair = {(row.function, row.setting): row for row in rows}
    assert by_pair["slo.probes.alpha", "seconds=20"].covered
    # the same function with another allowance is its own row, and no control failed it
    assert not by_pair["slo.probes.alpha", "seconds=120"].covered
    assert not by_pair["slo.probes.beta", ""].covered  # its control failed on another probe
    assert by_pair["slo.probes.beta", ""].missed_by == ("x[negative:p]:b",)
    assert not by_pair["slo.probes.gamma", ""].covered  # failed, but no control is meant for it
    table = render_coverage(rows)
    assert "1 of 4 (probe function, setting) pairs" in table
    assert "NONE slo.probes.beta [defaults]" in table
    assert "ok   slo.probes.alpha [seconds=20]" in table
    assert "NONE slo.probes.alpha [seconds=120]" in table
