"""Reports a person reads at a glance: KPIs that say which clock they read, rounded numbers
with units, colours that mean what they show, the probes' own limits on the charts, charts
from the run's start with left-over alerts labelled, the resilience score, the load rate,
and the verdicts 'aborted' and 'not judged'."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from chaoshelius.cli import main
from chaoshelius.report import Verdict, build_index, build_run_report
from chaoshelius.report.charts import GREEN, VERMILLION
from chaoshelius.report.kpis import compute_kpis
from chaoshelius.report.model import FaultWindow, HypothesisRow, Phase, Point, ProbeResult, Series
from chaoshelius.report.score import compute_score, probe_weights
from chaoshelius.report.units import describe_limits, format_quantity, format_seconds


def _journal(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "journal.json").read_text())
    return data


def _save(run_dir: Path, journal: dict[str, Any]) -> None:
    (run_dir / "journal.json").write_text(json.dumps(journal))


def _as_harness_slo_probes(run_dir: Path) -> dict[str, Any]:
    """Give the recorded toy probes the harness's SLO shape: provider function names and
    threshold dicts as chaoshelius.slo.probes writes them."""
    journal = _journal(run_dir)
    after = journal["steady_states"]["after"]["probes"]
    ratio, fallback = after[1], after[2]
    ratio["activity"]["provider"]["func"] = "client_success_ratio"
    ratio["output"]["threshold"] = {"min_ratio": 0.99, "min_requests": 20}
    fallback["activity"]["provider"]["func"] = "fallback_engaged_within"
    fallback["output"]["threshold"] = {"seconds": 5}
    fallback["output"]["value"] = 0.73
    _save(run_dir, journal)
    return journal


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0.9987599, "%", "99.87 %"),
        (0.99999, "%", "99.99 %"),  # never rounded up to a 100 % it was not
        (1.0, "%", "100 %"),
        (0.5, "%", "50 %"),
        (57.83684802055359, "s", "57.8 s"),
        (0.0196, "ms", "19.6 ms"),
        (0.0974, "ms", "97.4 ms"),
        (0.1234, "ms", "123 ms"),
        (78.912, "req/s", "78.9 req/s"),
        (13.0, "", "13"),
        (1.3456, "x", "×1.35"),
        (None, "s", "—"),
    ],
)
def test_numbers_are_rounded_with_their_unit(value: float | None, unit: str, text: str) -> None:
    assert format_quantity(value, unit) == text


def test_a_probes_limits_read_as_words_with_units() -> None:
    assert describe_limits({"replicas": 3, "seconds": 60}) == "3 replicas, ≤ 60.0 s"
    assert (
        describe_limits({"min_ratio": 0.99, "min_requests": 20, "min_throughput_ratio": 0.5})
        == "success ≥ 99 %, ≥ 20 requests, throughput ≥ 50 % of before"
    )
    assert describe_limits({"seconds": 20, "after_app_back": "mlflow"}) == (
        "≤ 20.0 s, clock from mlflow back up"
    )
    assert describe_limits({"min": None, "max": 0, "odd": "x"}) == "≤ 0, odd = x"


def test_durations_pick_a_readable_unit() -> None:
    assert format_seconds(0.0704) == "70.4 ms"
    assert format_seconds(2.000244617462158) == "2.0 s"
    assert format_seconds(300) == "5.0 min"


def _series(points: list[tuple[float, float]], **labels: str) -> Series:
    return Series("s", labels, tuple(Point(t, v) for t, v in points))


def test_worst_p99_is_over_the_fault_and_recovery_not_the_warm_up() -> None:
    window = FaultWindow("w", "scale", "mlflow", started_at=100.0, ended_at=120.0, source="x")
    p99 = _series([(5, 0.097), (50, 0.02), (105, 0.0196), (125, 0.03), (200, 0.5)])
    fallback = _series([(t, 1.0 if 102 <= t <= 128 else 0.0) for t in range(0, 210, 2)])
    ok = _series([(t, 10.0 * t) for t in range(0, 210, 2)], outcome="success")
    bad = _series([(t, 0.0) for t in range(0, 210, 2)], outcome="failure")
    kpis = compute_kpis(
        {"client_latency_p99": (p99,), "fallback": (fallback,), "client_requests": (ok, bad)},
        [window],
        run_start=0.0,
        run_end=210.0,
    )
    assert kpis.time_to_recover_s == 10.0  # fallback cleared at 130
    # the warm-up spike at +5 s and the late one at +200 s (after recovery) are left out
    assert kpis.worst_p99_s == 0.03
    assert kpis.worst_p99_until_s == 10.0
    assert kpis.load_rps_during_fault == pytest.approx(10.0)  # 200 requests in 20 s


def test_worst_p99_needs_a_fault_window() -> None:
    p99 = _series([(5, 0.097)])
    kpis = compute_kpis({"client_latency_p99": (p99,)}, [], 0.0, 10.0)
    assert kpis.worst_p99_s is None
    assert any("no fault window" in n for n in kpis.notes)


def _probe(name: str, met: bool | None, value: float | None, phase: Phase) -> ProbeResult:
    return ProbeResult(name, phase, met, "succeeded", value=value, structured=True)


def _row(name: str, after: ProbeResult | None) -> HypothesisRow:
    return HypothesisRow(name, _probe(name, True, None, Phase.BEFORE), (), after)


def test_score_is_weighted_by_probe_and_missing_data_never_passes() -> None:
    rows = [
        _row("a", _probe("a", True, 1.0, Phase.AFTER)),
        _row("b", _probe("b", True, None, Phase.AFTER)),  # "met" on no data: not a pass
        _row("c", _probe("c", False, 0.5, Phase.AFTER)),
        _row("d", None),  # never ran after the method
    ]
    score = compute_score(rows, Verdict.DEVIATED, {})
    assert score.value == 25.0
    assert "1 of 4 probes held" in score.detail and "1 never ran" in score.detail
    weighted = compute_score(rows, Verdict.DEVIATED, {"a": 3.0})
    assert weighted.value == 50.0 and "weighted 3 of 6" in weighted.detail
    assert compute_score(rows, Verdict.NOT_JUDGED, {}).value is None
    assert compute_score([], Verdict.PASSED, {}).value == 0.0


def test_probe_weights_come_from_the_experiments_extension() -> None:
    experiment = {
        "extensions": [
            {"name": "other", "probe_weights": {"a": 9}},
            {"name": "chaoshelius", "probe_weights": {"a": 2, "b": "x", "c": -1}},
        ]
    }
    assert probe_weights(experiment) == {"a": 2.0, "c": 0.0}


def test_run_report_shows_score_clocks_limits_and_load_rate(
    run_copy: Callable[..., Path],
) -> None:
    run_dir = run_copy("passed")
    _as_harness_slo_probes(run_dir)
    report = build_run_report(run_dir, offline=True)
    html = (run_dir / "report.html").read_text()
    s = report.summary
    assert s.resilience_score == 100.0 and s.score_detail is not None
    assert re.search(r'id="score".*?100.*?/ 100', html, re.S)
    assert "missing data never counts as a pass" in html
    # each KPI says which clock it reads; the probe judging the same thing is named with
    # its own limit and clock next to it
    assert "from the fault&#39;s end until no pod is in fallback" in html
    assert (
        "Judged by probe &#39;fallback-engaged-during-fault&#39;: 0.7 s (≤ 5.0 s, clock from "
        "the fault&#39;s start): held"
    ) in html
    # the probe's own threshold, on the chart it concerns
    success = _chart(html, "success_ratio")
    assert 'class="rule"' in success and "SLO: success ≥ 99 %" in success
    assert "fallback due by here" in _chart(html, "fallback")
    assert "measured <strong>100 %</strong><br>limit success ≥ 99 %, ≥ 20 requests" in html
    # the load each run had
    rps = s.kpis.load_rps_during_fault
    assert rps is not None and s.kpis.requests_during_fault is not None
    assert s.kpis.fault_duration_s is not None
    assert rps == pytest.approx(s.kpis.requests_during_fault / s.kpis.fault_duration_s)
    assert f"Load during the fault: <strong>{rps:.1f} req/s</strong>" in html


def _chart(html: str, key: str) -> str:
    return html.split(f'data-chart="{key}"', 1)[1].split("</svg>", 1)[0]


def test_colours_mean_what_they_show(run_copy: Callable[..., Path]) -> None:
    run_dir = run_copy("deviated")  # has successes and failures
    build_run_report(run_dir, offline=True)
    throughput = _chart((run_dir / "report.html").read_text(), "throughput")
    paths = dict(re.findall(r'stroke="(#[0-9A-Fa-f]{6})"[^>]*><title>(\w+)</title>', throughput))
    assert {v: k for k, v in paths.items()} == {"success": GREEN, "failure": VERMILLION}
    assert re.search(r'stroke="#D55E00" stroke-dasharray="5 3"><title>failure', throughput)


def test_charts_start_at_the_run_and_label_alerts_left_over_from_before(
    run_copy: Callable[..., Path],
) -> None:
    run_dir = run_copy("passed")
    series = json.loads((run_dir / "series.json").read_text())
    start = series["start"] + 15.0  # the run's start (queries begin 15 s before it)
    values = [[series["start"] + i, "1"] for i in range(0, 25)]
    series["queries"]["alerts"]["result"] = [
        {"metric": {"alertname": "MLflowDegraded"}, "values": values}
    ]
    (run_dir / "series.json").write_text(json.dumps(series))
    build_run_report(run_dir, offline=True)
    html = (run_dir / "report.html").read_text()
    alerts = _chart(html, "alerts")
    assert ">* MLflowDegraded</text>" in alerts
    assert "* already firing when the run started" in html
    assert "Alert(s) already firing when the run started: MLflowDegraded" in html
    first_tick = re.search(r'class="tick" x="([\d.]+)"[^>]*>([^<]+)<', alerts)
    assert first_tick is not None and first_tick.group(2) == "+0 s"
    assert float(first_tick.group(1)) == 150.0  # the plot's left edge: nothing before +0 s
    assert start > series["start"]


def test_an_alert_that_resolved_before_the_run_is_not_called_left_over(
    run_copy: Callable[..., Path],
) -> None:
    run_dir = run_copy("passed")
    series = json.loads((run_dir / "series.json").read_text())
    values = [[series["start"] + i, "1"] for i in range(0, 11)]  # stops 4 s before the run
    series["queries"]["alerts"]["result"] = [
        {"metric": {"alertname": "RecoEngineInFallback"}, "values": values}
    ]
    (run_dir / "series.json").write_text(json.dumps(series))
    build_run_report(run_dir, offline=True)
    assert "already firing" not in (run_dir / "report.html").read_text()


def test_an_ha_run_that_never_fell_back_says_so(run_copy: Callable[..., Path]) -> None:
    run_dir = run_copy("passed")
    series = json.loads((run_dir / "series.json").read_text())
    for item in series["queries"]["fallback"]["result"]:
        item["values"] = [[t, "0"] for t, _ in item["values"]]
    (run_dir / "series.json").write_text(json.dumps(series))
    report = build_run_report(run_dir, offline=True)
    assert report.summary.kpis.time_to_fallback_s is None
    card = (run_dir / "report.html").read_text().split('data-kpi="time_to_fallback_s"')[1]
    assert card.split("</div>", 2)[1].endswith("never (no pod fell back)")


def test_hypothesis_has_no_empty_during_column(run_copy: Callable[..., Path]) -> None:
    run_dir = run_copy("deviated")
    journal = _journal(run_dir)
    journal["steady_states"]["during"] = []
    _save(run_dir, journal)
    build_run_report(run_dir, offline=True)
    html = (run_dir / "report.html").read_text()
    assert "<th>Before the method</th><th>After the method</th>" in html
    assert "<th>During</th>" not in html


def test_aborted_and_not_judged_runs(run_copy: Callable[..., Path]) -> None:
    aborted = run_copy("interrupted", "aborted")
    (aborted / "safeguard.json").write_text(
        json.dumps(
            {
                "name": "client-harm",
                "tripped_at": _started(aborted) + 12.2,
                "reason": "client success 31.0% over the last 10 s is below the limit 50%",
            }
        )
    )
    summary = build_run_report(aborted, offline=True).summary
    assert summary.verdict is Verdict.ABORTED
    assert summary.reason.startswith("Aborted by the safeguard 'client-harm' at +12 s: client")
    assert 'class="verdict verdict-aborted"' in (aborted / "report.html").read_text()

    dry = run_copy("passed", "dry")
    journal = _journal(dry)
    journal["experiment"]["dry"] = "activities"
    _save(dry, journal)
    summary = build_run_report(dry, offline=True).summary
    assert summary.verdict is Verdict.NOT_JUDGED and summary.resilience_score is None
    html = (dry / "report.html").read_text()
    assert 'class="verdict verdict-not-judged"' in html
    assert '<div class="word">not judged</div>' in html

    junit = ET.parse(build_index(dry.parents[1]).junit_xml).getroot()  # noqa: S314  JUnit XML this test's own run wrote
    cases = {c.get("name"): c for c in junit.iter("testcase")}
    # not judged is a failure with its reason, never a (grey) skip: nothing was proven
    not_judged = cases[summary.experiment_key].find("failure")
    assert not_judged is not None and not_judged.get("type") == "not judged"
    assert not_judged.get("message") == f"not judged: {summary.reason}"
    failures = [c.find("failure") for c in cases.values() if c.find("failure") is not None]
    assert any(f is not None and f.get("type") == "aborted" for f in failures)
    assert junit.get("skipped") == "0" and junit.find(".//skipped") is None


def _started(run_dir: Path) -> float:
    from chaoshelius.report.journal import parse_timestamp

    started = parse_timestamp(_journal(run_dir)["start"])
    assert started is not None
    return started


def test_report_index_on_a_folder_without_runs_fails_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    result = CliRunner().invoke(main, ["report", "index", str(missing), "--fail-on-unexpected"])
    assert result.exit_code != 0
    assert len(result.output.strip().splitlines()) == 1 and "no runs to index" in result.output
    assert not missing.exists()


def test_browser_check_accepts_an_index_without_charts_but_not_a_run_report() -> None:
    from chaoshelius.report.browser_check import inspect_dom

    index = inspect_dom('<html data-ready="yes" data-page="index" data-js-errors="0"></html>')
    assert index.problems == []
    run = inspect_dom('<html data-ready="yes" data-page="run" data-js-errors="0"></html>')
    assert "no chart in the page" in run.problems
    broken = inspect_dom('<html data-ready="yes" data-page="index" data-js-errors="2"></html>')
    assert broken.problems == ["2 JavaScript error(s) in the page"]
