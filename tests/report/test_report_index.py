"""The index across runs, the history and the JUnit XML."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from chaoshelius.report import RunDirectoryError, build_index, build_run_report


def _suite(run_copy: Callable[..., Path]) -> Path:
    for name in ("passed", "deviated", "interrupted"):
        build_run_report(run_copy(name, f"2026-r1-{name}"), offline=True)
    return run_copy("passed").parents[1]  # the reports dir


def test_index_lists_each_experiment_with_verdict_and_kpis(
    run_copy: Callable[..., Path],
) -> None:
    reports = _suite(run_copy)
    result = build_index(reports)
    assert len(result.current) == 3
    html = result.index_html.read_text()
    for verdict in ("passed", "deviated", "interrupted"):
        assert f'pill-{verdict}">{verdict}</span>' in html
    assert 'href="runs/2026-r1-deviated/report.html"' in html
    assert "Availability during the fault" in html and "1 / 3 as expected" in html


def test_junit_one_case_per_experiment_with_failing_hypothesis(
    run_copy: Callable[..., Path],
) -> None:
    result = build_index(_suite(run_copy))
    root = ET.parse(result.junit_xml).getroot()  # noqa: S314  JUnit XML this test's own run wrote
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == 3
    assert root.get("tests") == "3" and root.get("failures") == "1" and root.get("errors") == "1"
    by_name = {c.get("name"): c for c in cases}
    deviated = by_name["toy-error-injection-30-of-predictions-fail"]
    failure = deviated.find("failure")
    assert failure is not None
    assert "client-success-ratio-during-fault" in (failure.get("message") or "")
    interrupted = next(c for c in cases if c.find("error") is not None)
    assert "interrupted" in (interrupted.find("error").get("message") or "")  # type: ignore[union-attr]
    passed = next(c for n, c in by_name.items() if n and n.startswith("toy-mlflow-outage-pred"))
    assert passed.find("failure") is None and passed.find("error") is None


def test_negative_control_expected_to_deviate_passes_in_junit(
    run_copy: Callable[..., Path],
) -> None:
    run_dir = run_copy("deviated", "neg")
    (run_dir / "meta.json").write_text(json.dumps({"expected_verdict": "deviated"}))
    build_run_report(run_dir, offline=True)
    result = build_index(run_dir.parents[1])
    root = ET.parse(result.junit_xml).getroot()  # noqa: S314  JUnit XML this test's own run wrote
    assert root.get("failures") == "0" and root.get("errors") == "0"
    (case,) = root.findall("./testsuite/testcase")
    assert case.find("failure") is None


def test_history_keeps_earlier_runs_and_draws_trends(run_copy: Callable[..., Path]) -> None:
    first = run_copy("passed", "a-first")
    build_run_report(first, offline=True)
    second = run_copy("passed", "b-second")
    build_run_report(second, offline=True)
    summary = json.loads((second / "summary.json").read_text())
    summary["started_at"] += 3600
    summary["kpis"]["time_to_recover_s"] = 2.5
    (second / "summary.json").write_text(json.dumps(summary))
    third = run_copy("passed", "c-third")
    build_run_report(third, offline=True)
    summary = json.loads((third / "summary.json").read_text())
    summary["started_at"] += 7200
    (third / "summary.json").write_text(json.dumps(summary))
    (first.parent / "broken").mkdir()
    (first.parent / "broken" / "summary.json").write_text("{")

    result = build_index(first.parents[1])
    (key,) = result.history
    assert [s.run_id for s in result.history[key]] == ["a-first", "b-second", "c-third"]
    assert [s.run_id for s in result.current] == ["c-third"]
    assert result.problems and "broken" in result.problems[0]
    html = result.index_html.read_text()
    # a trend draws a sparkline with its scale: lowest – highest value in the column's unit
    ttr = [s.kpis.time_to_recover_s for s in result.history[key]]
    low, high = min(v for v in ttr if v is not None), 2.5
    assert '<span class="spark"><svg' in html
    assert f"{low:.1f} – {high:.1f} s, oldest → newest" in html


def test_index_has_one_unit_per_column_and_no_empty_column(
    run_copy: Callable[..., Path],
) -> None:
    run = run_copy("passed", "only")
    build_run_report(run, offline=True)
    summary = json.loads((run / "summary.json").read_text())
    summary["kpis"]["time_to_fallback_s"] = None  # e.g. an HA experiment: never falls back
    summary["kpis"]["worst_p99_s"] = 0.0493
    summary["kpis"]["time_to_recover_s"] = 57.83684802055359
    (run / "summary.json").write_text(json.dumps(summary))
    html = build_index(run.parents[1]).index_html.read_text()
    suite = html.split('id="suite"')[1].split("</table>")[0]
    headers = re.findall(r'<th data-col="(\w+)">', suite)
    assert "time_to_fallback_s" not in headers  # no value in any run: no column
    assert 'Worst p99, fault + recovery <span class="muted small">(ms)</span>' in suite
    assert 'Time to recover <span class="muted small">(s)</span>' in suite
    cells = dict(re.findall(r'<td class="num" data-col="(\w+)"[^>]*>([^<]*)</td>', suite))
    assert cells["worst_p99_s"] == "49.3"  # ms, the unit in the header only
    assert cells["time_to_recover_s"] == "57.8"
    assert cells["availability_during_fault"] == "100"
    assert cells["resilience_score"] == "100"
    assert "missing data never counts as a pass" in html


def test_suite_id_selects_the_current_runs(run_copy: Callable[..., Path]) -> None:
    old = run_copy("passed", "old")
    (old / "meta.json").write_text(json.dumps({"suite_id": "s1"}))
    build_run_report(old, offline=True)
    new = run_copy("passed", "new")
    (new / "meta.json").write_text(json.dumps({"suite_id": "s2"}))
    build_run_report(new, offline=True)
    result = build_index(old.parents[1], suite_id="s1")
    assert [s.run_id for s in result.current] == ["old"]


def test_a_folder_without_runs_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "reprots"
    with pytest.raises(RunDirectoryError, match="no runs to index"):
        build_index(missing)
    assert not missing.exists()
    empty = tmp_path / "empty"
    (empty / "runs" / "one").mkdir(parents=True)
    with pytest.raises(RunDirectoryError):
        build_index(empty)
    assert not (empty / "index.html").exists() and not (empty / "junit.xml").exists()


def test_negative_controls_have_their_own_history_and_expected_probe(
    run_copy: Callable[..., Path],
) -> None:
    """A negative control's run is not compared with its experiment's runs, and it only
    counts as expected when it deviated on the probe it names."""
    plain = run_copy("deviated", "plain")
    build_run_report(plain, offline=True)
    right = run_copy("deviated", "neg-right")
    (right / "meta.json").write_text(
        json.dumps(
            {
                "expected_verdict": "deviated",
                "variant": "negative:fragile",
                "expected_failing_probe": "client-success-ratio-during-fault",
            }
        )
    )
    build_run_report(right, offline=True)
    wrong = run_copy("deviated", "neg-wrong")
    (wrong / "meta.json").write_text(
        json.dumps(
            {
                "expected_verdict": "deviated",
                "variant": "negative:other",
                "expected_failing_probe": "some-other-probe",
            }
        )
    )
    build_run_report(wrong, offline=True)
    result = build_index(plain.parents[1])
    assert len(result.history) == 3 and len(result.current) == 3
    by_run = {s.run_id: s for s in result.current}
    assert not by_run["plain"].as_expected
    assert by_run["neg-right"].as_expected
    assert not by_run["neg-wrong"].as_expected
    root = ET.parse(result.junit_xml).getroot()  # noqa: S314  JUnit XML this test's own run wrote
    assert root.get("failures") == "2"
    messages = [f.get("message") or "" for f in root.iter("failure")]
    assert any("expected probe 'some-other-probe'" in m for m in messages)


def _summary_file(reports: Path, run_id: str, verdict: str, reason: str, **extra: object) -> None:
    """A run's summary.json as the suite writes it (no journal needed to index it)."""
    run_dir = reports / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "run_id": run_id,
        "experiment_key": run_id.split("-", 1)[1],
        "experiment_title": run_id.split("-", 1)[1],
        "verdict": verdict,
        "reason": reason,
        "status": None,
        "deviated": False,
        "started_at": None,
        "ended_at": None,
        "duration_s": None,
        "failing_probe": None,
        "kpis": {"notes": [reason]},
        "suite_id": "s1",
        **extra,
    }
    (run_dir / "summary.json").write_text(json.dumps(data))


def test_not_judged_and_not_run_are_failures_never_skips(tmp_path: Path) -> None:
    """Nothing unjudged looks green (issue 19, item 6): a run the steady gate refused, a
    negative control that was not judged and a run that never started are failures (or errors)
    in JUnit with their reason, and failures in the index, counted by kind."""
    reports = tmp_path / "reports"
    _summary_file(reports, "s1-az-drain", "not judged", "The stack was not steady.")
    _summary_file(
        reports,
        "s1-rds-path-cut",
        "not judged",
        "The fault action failed.",
        variant="negative:slow-fallback",
        expected_verdict="deviated",
        expected_failing_probes=["clients-latency-slo"],
    )
    _summary_file(reports, "s1-mlflow-pod-kill", "not run", "The suite was interrupted first.")
    result = build_index(reports, suite_id="s1")
    assert not any(s.as_expected for s in result.current)

    root = ET.parse(result.junit_xml).getroot()  # noqa: S314  JUnit XML this test's own run wrote
    assert root.find(".//skipped") is None and root.get("skipped") == "0"
    assert root.get("failures") == "2" and root.get("errors") == "1"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    refused = cases["az-drain"].find("failure")
    assert refused is not None and refused.get("type") == "not judged"
    assert refused.get("message") == "not judged: The stack was not steady."
    control = cases["rds-path-cut[negative:slow-fallback]"].find("failure")
    assert control is not None and control.get("message") == "not judged: The fault action failed."
    never = cases["mlflow-pod-kill"].find("error")
    assert never is not None and never.get("type") == "not run"
    assert never.get("message") == "not run: The suite was interrupted first."

    html = result.index_html.read_text()
    assert "0 / 3 as expected" in html
    assert "2 not judged, 1 not run" in html
    assert 'pill-not-judged">not judged</span>' in html and 'pill-not-run">not run</span>' in html
    assert "The stack was not steady." in html and "The suite was interrupted first." in html
    css = html.split("<style>")[1].split("</style>")[0]
    for kind in ("not-judged", "not-run"):  # styled as a failure: the deviated pill's colours
        rule = next(line for line in css.splitlines() if f".pill-{kind}" in line)
        assert ".pill-deviated" in rule


def test_a_suite_index_lists_every_run_of_a_campaign(tmp_path: Path) -> None:
    """With --repeat, every run of the suite is a row and a JUnit case, so a repeat that
    never ran (or deviated) is not hidden behind the last one that passed."""
    reports = tmp_path / "reports"
    _summary_file(reports, "s1-az-drain-r01", "passed", "held", started_at=1.0)
    _summary_file(reports, "s1-az-drain-r02", "not run", "The suite was interrupted first.")
    for run in ("s1-az-drain-r01", "s1-az-drain-r02"):
        data = json.loads((reports / "runs" / run / "summary.json").read_text())
        (reports / "runs" / run / "summary.json").write_text(
            json.dumps({**data, "experiment_key": "az-drain", "experiment_title": "az-drain"})
        )
    result = build_index(reports, suite_id="s1")
    assert [s.run_id for s in result.current] == ["s1-az-drain-r01", "s1-az-drain-r02"]
    root = ET.parse(result.junit_xml).getroot()  # noqa: S314  JUnit XML this test's own run wrote
    names = [c.get("name") for c in root.iter("testcase")]
    assert len(names) == 2 and len(set(names)) == 2
    assert root.get("tests") == "2" and root.get("errors") == "1"
