"""`chaoshelius report margins`: the share of each allowance healthy runs used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from chaoshelius.cli import main
from chaoshelius.report.margins import allowance_used, collect


def _probe(name: str, func: str, ok: bool, **output: Any) -> dict[str, Any]:
    return {
        "activity": {"name": name, "provider": {"type": "python", "func": func}},
        "output": {"ok": ok, **output},
        "tolerance_met": ok,
    }


def _latency(p99: float, ok: bool = True) -> dict[str, Any]:
    # allowed: 3 x 20 ms + 50 ms = 110 ms on the tail; 2 x 4 ms + 5 ms = 13 ms on the median
    return _probe(
        "clients-latency-slo",
        "latency_p99_ratio",
        ok,
        threshold={"max_ratio": 3.0, "noise_seconds": 0.05, "p50_max_ratio": 2.0,
                   "p50_noise_seconds": 0.005},
        allowed_seconds=0.11,
        p99_during_seconds=p99,
        p99_before_seconds=0.02,
        p50_during_seconds=0.0052,
        p50_before_seconds=0.004,
        description=f"client p99 {p99 * 1000:.0f} ms",
    )  # fmt: skip


def _run(reports: Path, run_id: str, probes: list[dict[str, Any]], variant: str | None = None,
         deviated: bool = False) -> None:  # fmt: skip
    run_dir = reports / "runs" / run_id
    run_dir.mkdir(parents=True)
    experiment = run_id.split("-", 2)[2]
    (run_dir / "meta.json").write_text(json.dumps({"experiment": experiment, "variant": variant}))
    journal = {
        "status": "completed",
        "deviated": deviated,
        "steady_states": {"after": {"probes": probes}},
    }
    (run_dir / "journal.json").write_text(json.dumps(journal))


def test_allowance_used_per_probe_function() -> None:
    assert allowance_used("latency_p99_ratio", _latency(0.055)["output"]) == pytest.approx(0.5)
    # the median dominates when it is the closer call: 13 ms allowed, 11.7 ms seen
    slower = {**_latency(0.02)["output"], "p50_during_seconds": 0.0117}
    assert allowance_used("latency_p99_ratio", slower) == pytest.approx(0.9)
    # the absolute SLO counts where it was judged: 55 ms of a 100 ms p99 ceiling is the closest
    held = {**_latency(0.055)["output"], "slo_p99_seconds": 0.1, "slo_p50_seconds": 0.025}
    assert allowance_used("latency_p99_ratio", held) == pytest.approx(0.55)
    success = {"value": 0.995, "worst_window_ratio": 0.97,
               "threshold": {"min_ratio": 0.99, "min_worst_ratio": 0.95}}  # fmt: skip
    assert allowance_used("client_success_ratio", success) == pytest.approx(0.6)
    alert = {"value": 15.0, "threshold": {"within_seconds": 30}}
    assert allowance_used("alert_fired", alert) == pytest.approx(0.5)
    assert allowance_used("pods_ready", {"value": 3, "threshold": {"min_ready": 3}}) is None
    assert allowance_used("latency_p99_ratio", {"threshold": {}}) is None  # no data: no margin


def test_margins_over_several_reports_dirs_closest_first(tmp_path: Path) -> None:
    first, second = tmp_path / "s1", tmp_path / "s2"
    _run(first, "20261130-000001-rds-path-cut", [_latency(0.033)])
    _run(second, "20261130-000002-rds-path-cut", [_latency(0.088)])
    _run(second, "20261130-000002-az-drain", [_latency(0.132, ok=False)], deviated=True)
    # a negative control is meant to fail: never part of the healthy margins
    _run(second, "20261130-000002-az-drain--slow", [_latency(5.0, ok=False)], "negative:slow")

    found = collect([first, second])
    assert found.runs == 3 and found.deviated == ["20261130-000002-az-drain"]
    assert [(m.experiment, round(m.worst, 2), m.failed) for m in found.rows] == [
        ("az-drain", 1.2, 1),
        ("rds-path-cut", 0.8, 0),
    ]
    assert found.rows[1].closest == "client p99 88 ms" and len(found.rows[1].used) == 2

    shown = CliRunner().invoke(main, ["report", "margins", str(first), str(second)])
    assert shown.exit_code == 0, shown.output
    assert "3 normal run(s), 1 deviated" in shown.output
    assert shown.output.index(" 1.20 ") < shown.output.index(" 0.80 ")


def test_margins_without_runs_is_a_one_line_error(tmp_path: Path) -> None:
    shown = CliRunner().invoke(main, ["report", "margins", str(tmp_path)])
    assert shown.exit_code != 0 and "no normal runs" in shown.output


def test_margins_count_runs_that_never_started_or_were_not_judged(tmp_path: Path) -> None:
    """A campaign's figures cannot look better by losing runs: a run that never started (a
    summary.json and no journal) and one the steady gate refused are counted, with why."""
    reports = tmp_path / "s1"
    _run(reports, "20261130-000001-az-drain", [_latency(0.033)])
    never = reports / "runs" / "20261130-000001-az-drain-r02"
    never.mkdir(parents=True)
    (never / "summary.json").write_text(
        json.dumps({"run_id": never.name, "experiment_key": "az-drain", "verdict": "not run",
                    "reason": "The suite was interrupted before this run started."})
    )  # fmt: skip
    _run(reports, "20261130-000001-rds-path-cut", [])
    refused = reports / "runs" / "20261130-000001-rds-path-cut"
    (refused / "journal.json").write_text(json.dumps({"status": "interrupted", "deviated": False}))
    (refused / "summary.json").write_text(
        json.dumps({"run_id": refused.name, "experiment_key": "rds-path-cut",
                    "verdict": "not judged", "reason": "The stack was not steady."})
    )  # fmt: skip
    # a negative control that never ran is still a negative control: left out
    control = reports / "runs" / "20261130-000001-az-drain--slow"
    control.mkdir(parents=True)
    (control / "summary.json").write_text(
        json.dumps({"run_id": control.name, "experiment_key": "az-drain", "verdict": "not run",
                    "variant": "negative:slow", "reason": "interrupted"})
    )  # fmt: skip

    found = collect([reports])
    assert found.runs == 3 and found.deviated == []
    assert found.unjudged == [
        ("20261130-000001-az-drain-r02", "not run",
         "The suite was interrupted before this run started."),
        ("20261130-000001-rds-path-cut", "not judged", "The stack was not steady."),
    ]  # fmt: skip
    shown = CliRunner().invoke(main, ["report", "margins", str(reports)])
    assert shown.exit_code == 0, shown.output
    assert "3 normal run(s), 0 deviated, 2 not run/not judged" in shown.output
    assert "  not run: 20261130-000001-az-drain-r02 (The suite was interrupted" in shown.output
    assert "  not judged: 20261130-000001-rds-path-cut (The stack was not steady.)" in shown.output
