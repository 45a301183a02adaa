"""JUnit XML for CI: one test case per experiment of the suite."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from chaoshelius.report.model import RunSummary, Verdict


def junit_tree(summaries: Sequence[RunSummary], suite_name: str = "helius-chaos") -> ET.Element:
    """<testsuites><testsuite> with a <testcase> per run; failure = the failing hypothesis.

    A run whose verdict is its expected one passes (a negative control expects `deviated`).
    Otherwise a deviated / passed-but-expected-to-deviate run is a <failure>, and an
    interrupted or failed run is an <error>, an aborted one (a safeguard stopped it) a
    <failure type="aborted">, a run that was not judged (the steady gate refused, dry, the
    fault never happened) a <failure type="not judged"> and a planned run that never started
    an <error type="not run">, each with its reason: nothing unjudged is ever <skipped>.
    Several runs of one experiment (a `--repeat` campaign) are told apart by their run id.
    """
    failures = errors = skipped = 0
    suite = ET.Element("testsuite", name=suite_name)
    total_time = 0.0
    names = [_case_name(s) for s in summaries]
    for s in summaries:
        name = _case_name(s)
        if names.count(name) > 1:
            name = f"{name} ({s.run_id})"
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"{suite_name}.{s.experiment_key}",
            name=name,
            time=f"{s.duration_s or 0.0:.3f}",
        )
        total_time += s.duration_s or 0.0
        detail = f"run {s.run_id}: verdict {s.verdict}, expected {s.expected_verdict}. {s.reason}"
        if not s.as_expected:
            tag, kind, message = _outcome(s)
            failures += tag == "failure"
            errors += tag == "error"
            element = ET.SubElement(case, tag, type=kind, message=message)
            element.text = detail
        out = ET.SubElement(case, "system-out")
        out.text = (
            detail
            + f"\nResilience score: {s.resilience_score}"
            + (f" ({s.score_detail})" if s.score_detail else "")
            + "\nKPIs: "
            + ", ".join(f"{k}={v}" for k, v in s.kpis.as_dict().items() if k != "notes")
        )
    suite.set("tests", str(len(summaries)))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    suite.set("time", f"{total_time:.3f}")
    root = ET.Element(
        "testsuites",
        tests=str(len(summaries)),
        failures=str(failures),
        errors=str(errors),
        skipped=str(skipped),
        time=f"{total_time:.3f}",
    )
    root.append(suite)
    return root


def _outcome(s: RunSummary) -> tuple[str, str, str]:
    """(element, type, message) of a run that was not as expected."""
    if s.verdict is Verdict.NOT_JUDGED:  # refused by the steady gate, dry, no fault
        return "failure", str(s.verdict), f"not judged: {s.reason}"
    if s.verdict is Verdict.NOT_RUN:  # planned, never started
        return "error", str(s.verdict), f"not run: {s.reason}"
    if s.verdict is Verdict.ABORTED:  # a stop condition: users hurt beyond a limit
        return "failure", "aborted", s.reason
    if s.verdict in (Verdict.INTERRUPTED, Verdict.FAILED):
        return "error", str(s.verdict), s.reason
    if s.verdict == s.expected_verdict:  # deviated, but not where it should have
        message = (
            f"deviated on probe {s.failing_probe!r}, expected probe "
            f"{s.expected_failing_probe!r} to catch it: {s.reason}"
        )
    elif s.verdict == Verdict.DEVIATED:
        message = s.reason
    else:
        message = f"expected {s.expected_verdict} but the hypothesis held: {s.reason}"
    return "failure", str(s.verdict), message


def _case_name(s: RunSummary) -> str:
    return s.experiment_key if s.variant is None else f"{s.experiment_key}[{s.variant}]"


def write_junit(summaries: Sequence[RunSummary], path: Path) -> None:
    tree = ET.ElementTree(junit_tree(summaries))
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
