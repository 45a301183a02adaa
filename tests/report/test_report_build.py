"""Building a run's report from recorded run directories (offline, unreachable Prometheus...)."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from markupsafe import escape as html_escape

from chaoshelius.report import RunDirectoryError, Verdict, build_run_report
from chaoshelius.report.build import load_run


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more


@pytest.mark.parametrize("name", ["passed", "deviated", "interrupted"])
def test_offline_build_writes_report_and_summary(run_copy: Callable[..., Path], name: str) -> None:
    run_dir = run_copy(name)
    report = build_run_report(run_dir, offline=True)
    assert report.summary.verdict is Verdict(name)
    html = (run_dir / "report.html").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["verdict"] == name and summary["run_id"] == name
    assert f'class="verdict verdict-{name}"' in html
    assert str(html_escape(report.summary.reason)) in html
    # self-contained: nothing fetched from the network
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<link" not in html
    # charts drawn server-side, with the fault window shaded
    assert html.count('<svg class="chart') >= 8
    assert 'class="shade"' in html and 'class="line"' in html
    # raw data linked
    assert 'href="journal.json"' in html and 'href="locust_stats.csv"' in html


def test_values_are_shown_rounded_and_kept_as_measured(run_copy: Callable[..., Path]) -> None:
    run_dir = run_copy("deviated")
    build_run_report(run_dir, offline=True)
    journal = json.loads((run_dir / "journal.json").read_text())
    measured = journal["steady_states"]["after"]["probes"][1]["output"]["value"]
    html = (run_dir / "report.html").read_text()
    assert repr(measured) not in html  # 0.7452598786099225 is not for reading
    assert "measured <strong>0.745</strong>" in html
    assert not re.search(r"\d\.\d{7,}", _visible_text(html)), "a raw float is shown"
    summary = json.loads((run_dir / "summary.json").read_text())
    availability = summary["kpis"]["availability_during_fault"]
    assert isinstance(availability, float) and 0 < availability < 0.99
    assert availability != round(availability, 2)


def test_passed_report_shows_before_during_after_and_kpis(run_copy: Callable[..., Path]) -> None:
    run_dir = run_copy("passed")
    report = build_run_report(run_dir, offline=True)
    html = (run_dir / "report.html").read_text()
    kpis = report.summary.kpis
    assert kpis.availability_during_fault == 1.0
    assert kpis.time_to_fallback_s is not None and kpis.time_to_recover_s is not None
    for label in ("Availability during the fault", "Time to fallback", "Time to recover"):
        assert label in html
    assert "<th>Before the method</th><th>During</th><th>After the method</th>" in html
    assert report.windows[0].source == "windows.json"
    assert "mlflow-outage" in html and "restore-everything" in html


def _visible_text(html: str) -> str:
    """The page's text without tags, attributes, scripts and styles."""
    html = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S)
    html = re.sub(r"<(pre|code)\b.*?</\1>", "", html, flags=re.S)  # raw outputs, PromQL
    return re.sub(r"<[^>]+>", " ", html)


def test_html_is_autoescaped(run_copy: Callable[..., Path]) -> None:
    run_dir = run_copy("passed")
    journal_path = run_dir / "journal.json"
    journal = json.loads(journal_path.read_text())
    journal["experiment"]["title"] = "<script>alert(1)</script>"
    journal["steady_states"]["after"]["probes"][0]["output"] = {"x": "<img src=x onerror=1>"}
    journal_path.write_text(json.dumps(journal))
    build_run_report(run_dir, offline=True)
    html = (run_dir / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)" in html
    assert "<img src=x" not in html


def test_prometheus_unreachable_is_reported_not_raised(run_copy: Callable[..., Path]) -> None:
    run_dir = run_copy("deviated")
    (run_dir / "series.json").unlink()
    url = _closed_port_url()
    report = build_run_report(run_dir, url, timeout_s=2)
    assert report.summary.prometheus_error is not None
    assert "unreachable" in report.summary.prometheus_error
    html = (run_dir / "report.html").read_text()
    assert 'id="prometheus-error"' in html and url in html
    series = json.loads((run_dir / "series.json").read_text())
    assert series["error"] and series["queries"] == {}
    # the Locust history still gives the client-side KPIs
    assert report.summary.kpis.availability_during_fault is not None
    assert report.summary.verdict is Verdict.DEVIATED


def test_unreachable_keeps_previously_fetched_series(run_copy: Callable[..., Path]) -> None:
    run_dir = run_copy("passed")
    before = (run_dir / "series.json").read_text()
    report = build_run_report(run_dir, _closed_port_url(), timeout_s=2)
    assert (run_dir / "series.json").read_text() == before
    assert report.summary.prometheus_error and "fetched earlier" in report.summary.prometheus_error
    assert report.summary.kpis.time_to_fallback_s is not None


def test_missing_journal_still_gets_a_report(run_copy: Callable[..., Path]) -> None:
    run_dir = run_copy("interrupted")
    (run_dir / "journal.json").unlink()
    report = build_run_report(run_dir, offline=True)
    assert report.summary.verdict is Verdict.INTERRUPTED
    assert "journal.json is missing" in report.summary.reason
    assert (run_dir / "report.html").is_file()


def test_a_run_that_never_wrote_a_journal_nor_started_is_not_run(tmp_path: Path) -> None:
    """chaos exited before the experiment started (nothing but meta.json and its output):
    the run is 'not run', with the reason, not an interruption of something that ran."""
    run_dir = tmp_path / "runs" / "s1-az-drain"
    run_dir.mkdir(parents=True)
    (run_dir / "meta.json").write_text('{"experiment": "az-drain", "suite_id": "s1"}')
    (run_dir / "chaos.out").write_text("Error: no such option: --bogus\n")
    report = build_run_report(run_dir, offline=True)
    assert report.summary.verdict is Verdict.NOT_RUN
    assert report.summary.reason.startswith("The chaos process wrote no journal")
    assert "chaos.out" in report.summary.reason
    assert not report.summary.as_expected and report.summary.resilience_score is None


def test_bare_directory_and_broken_files(tmp_path: Path) -> None:
    run_dir = tmp_path / "empty"
    run_dir.mkdir()
    (run_dir / "journal.json").write_text("{not json")
    (run_dir / "meta.json").write_text('{"expected_verdict": "nonsense"}')
    report = build_run_report(run_dir, offline=True)
    assert report.summary.verdict is Verdict.INTERRUPTED
    assert any("meta.json" in w for w in report.warnings)
    assert "unreadable" in (run_dir / "report.html").read_text()
    with pytest.raises(RunDirectoryError):
        load_run(tmp_path / "nope", offline=True)


def test_meta_sets_key_variant_and_expected_verdict(run_copy: Callable[..., Path]) -> None:
    run_dir = run_copy("deviated")
    (run_dir / "meta.json").write_text(
        json.dumps(
            {
                "experiment": "error-injection",
                "variant": "negative:errors",
                "expected_verdict": "deviated",
                "suite_id": "s1",
            }
        )
    )
    summary = build_run_report(run_dir, offline=True).summary
    assert summary.experiment_key == "error-injection" and summary.as_expected
    assert summary.suite_id == "s1" and summary.variant == "negative:errors"


def test_windows_from_prometheus_when_no_other_record(run_copy: Callable[..., Path]) -> None:
    run_dir = run_copy("passed")
    (run_dir / "windows.json").unlink()
    journal = json.loads((run_dir / "journal.json").read_text())
    for run in journal["run"] + journal["rollbacks"]:
        if isinstance(run.get("output"), dict):
            run["output"].pop("window", None)
    (run_dir / "journal.json").write_text(json.dumps(journal))
    series = json.loads((run_dir / "series.json").read_text())
    start, end = journal["run"][0]["output"]["fault"]["started_at"], None
    step = series["step"]
    values = [[t, "1" if start <= t <= start + 8 else "0"] for t in _times(series, step)]
    end = start + 8
    series["queries"]["fault_active"]["result"] = [
        {"metric": {"kind": "mlflow-outage", "target": "app=mlflow"}, "values": values}
    ]
    (run_dir / "series.json").write_text(json.dumps(series))
    report = build_run_report(run_dir, offline=True)
    (window,) = report.windows
    assert window.source == "prometheus" and window.kind == "mlflow-outage"
    assert window.ended_at is not None and abs(window.ended_at - end) <= 2 * step


def _times(series: dict[str, object], step: object) -> list[float]:
    start, end = float(series["start"]), float(series["end"])  # type: ignore[arg-type]
    n = int((end - start) / float(step)) + 1  # type: ignore[arg-type]
    return [start + i * float(step) for i in range(n)]  # type: ignore[arg-type]


def test_rebuild_is_stable(run_copy: Callable[..., Path]) -> None:
    run_dir = run_copy("passed")
    build_run_report(run_dir, offline=True)
    first = json.loads((run_dir / "summary.json").read_text())
    build_run_report(run_dir, offline=True)
    assert json.loads((run_dir / "summary.json").read_text()) == first
