"""The journal reader on journals recorded from real `chaos run`s (fixtures/README.md)."""

from __future__ import annotations

import copy
import json

import pytest
from report_fixtures import RUNS, load_journal

from chaoshelius.report.journal import (
    parse_timestamp,
    probe_from_run,
    read_journal,
    windows_from_file,
    windows_from_journal,
)
from chaoshelius.report.model import Phase, Verdict


def test_passed_run_verdict_and_probes_in_every_phase() -> None:
    view = read_journal(load_journal("passed"))
    assert view.verdict is Verdict.PASSED
    assert view.status == "completed" and view.deviated is False
    assert view.failing_probe is None
    names = [row.name for row in view.hypothesis]
    assert names == [
        "control-api-answers",
        "client-success-ratio-during-fault",
        "fallback-engaged-during-fault",
    ]
    ratio = view.hypothesis[1]
    assert ratio.before is not None and ratio.before.met is True
    assert ratio.before.value is None  # no fault yet: vacuous, no data
    assert ratio.during, "the run used --hypothesis-strategy continuously"
    assert ratio.after is not None and ratio.after.structured
    assert ratio.after.value is not None and ratio.after.value >= 0.99
    assert ratio.after.threshold == 0.99
    assert ratio.after.query and "helius_client_requests_total" in ratio.after.query


def test_deviated_run_names_the_failing_probe_and_its_measured_value() -> None:
    journal = load_journal("deviated")
    view = read_journal(journal)
    assert view.verdict is Verdict.DEVIATED
    assert view.failing_probe == "client-success-ratio-during-fault"
    measured = journal["steady_states"]["after"]["probes"][1]["output"]["value"]
    assert isinstance(measured, float) and measured < 0.99
    after = view.hypothesis[1].after
    assert after is not None and after.met is False
    assert after.value == measured  # kept as measured, not rounded
    assert "client-success-ratio-during-fault" in view.reason
    assert "measured 0.745 against" in view.reason and "0.99" in view.reason


def test_interrupted_run_says_where_and_that_rollbacks_ran() -> None:
    view = read_journal(load_journal("interrupted"))
    assert view.verdict is Verdict.INTERRUPTED
    assert "hold-under-load" in view.reason and "1 rollback(s) ran" in view.reason
    sections = [(e.section, e.name) for e in view.timeline]
    assert ("rollback", "restore-everything") in sections
    assert ("method", "restore-mlflow") not in sections  # SIGTERM came before it


def test_windows_from_journal_open_and_close() -> None:
    passed = windows_from_journal(load_journal("passed"))
    assert len(passed) == 1
    (window,) = passed
    assert window.kind == "mlflow-outage" and window.target == "app=mlflow"
    assert window.ended_at is not None and 7.5 < window.ended_at - window.started_at < 12
    # the recorder also wrote windows.json from the toy stack: both agree
    (from_file,) = windows_from_file(json.loads((RUNS / "passed" / "windows.json").read_text()))
    assert from_file.id == window.id
    assert from_file.started_at == pytest.approx(window.started_at)
    assert from_file.ended_at == pytest.approx(window.ended_at)


def test_interrupted_window_is_closed_by_the_rollback() -> None:
    (window,) = windows_from_journal(load_journal("interrupted"))
    assert window.ended_at is not None
    rollback = load_journal("interrupted")["rollbacks"][0]
    assert window.ended_at == rollback["output"]["window"]["ended_at"]


def test_window_left_open_when_nothing_closes_it() -> None:
    journal = copy.deepcopy(load_journal("interrupted"))
    journal["rollbacks"] = []
    (window,) = windows_from_journal(journal)
    assert window.ended_at is None


def test_non_slo_probe_output_is_kept_raw() -> None:
    run = load_journal("passed")["steady_states"]["before"]["probes"][0]
    probe = probe_from_run(run, Phase.BEFORE)
    assert probe.structured is False and probe.raw_output is True and probe.met is True
    odd = probe_from_run(
        {"activity": {"name": "odd"}, "status": "succeeded", "output": {"ok": True}},
        Phase.AFTER,
    )
    assert odd.structured is False and odd.raw_output == {"ok": True}
    nan = probe_from_run(
        {"activity": {"name": "n"}, "output": {"ok": False, "value": "NaN", "threshold": 1}},
        Phase.AFTER,
    )
    assert nan.structured and nan.value is None


def test_steady_state_not_met_before_is_failed() -> None:
    journal = copy.deepcopy(load_journal("deviated"))
    after = journal["steady_states"]["after"]
    journal["steady_states"] = {"before": after, "after": None, "during": []}
    journal["run"], journal["rollbacks"] = [], []
    journal["status"], journal["deviated"] = "failed", False
    view = read_journal(journal)
    assert view.verdict is Verdict.FAILED
    assert "before the method" in view.reason and view.failing_probe is not None


def test_empty_or_foreign_journal_does_not_crash() -> None:
    view = read_journal({})
    assert view.verdict is Verdict.INTERRUPTED
    assert view.hypothesis == () and view.timeline == () and view.windows == ()
    weird = read_journal({"status": "completed", "steady_states": "x", "run": [1, None]})
    assert weird.verdict is Verdict.PASSED
    assert [e.name for e in weird.timeline] == ["?", "?"]


def test_parse_timestamp_forms() -> None:
    assert parse_timestamp("1970-01-01T00:00:10+00:00") == 10.0
    assert parse_timestamp("1970-01-01T00:00:10Z") == 10.0
    assert parse_timestamp("1970-01-01T00:00:10") == 10.0  # naive = UTC
    assert parse_timestamp(12.5) == 12.5
    assert parse_timestamp("yesterday") is None and parse_timestamp(None) is None
