"""Read a Chaos Toolkit journal into the report model: verdict, hypothesis, timeline, windows.

The journal shape is chaoslib's (`chaoslib.run.initialize_run_journal`): top-level `status`,
`deviated`, `steady_states` {before, after, during}, `run` and `rollbacks` (activity runs with
`activity`, `status`, `start`, `end`, `output`, `exception`), `start`/`end`, `experiment`.
Any part may be missing in an interrupted run; nothing here assumes it is present.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chaoshelius.report.model import (
    FaultWindow,
    HypothesisRow,
    Phase,
    ProbeResult,
    TimelineEvent,
    Verdict,
)

_OUTPUT_EXCERPT_CHARS = 300


@dataclass(frozen=True)
class JournalView:
    """What the report takes from one journal."""

    title: str
    description: str | None
    hypothesis_title: str | None
    status: str | None
    deviated: bool
    started_at: float | None
    ended_at: float | None
    verdict: Verdict
    reason: str
    failing_probe: str | None
    hypothesis: tuple[HypothesisRow, ...]
    timeline: tuple[TimelineEvent, ...]
    windows: tuple[FaultWindow, ...]
    warnings: tuple[str, ...]
    # every probe that failed after the method (chaoshelius.slo.judge_all judges them all)
    failing_probes: tuple[str, ...] = ()


def parse_timestamp(value: Any) -> float | None:
    """chaoslib writes ISO-8601 strings (UTC, with or without offset); return epoch seconds."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:  # chaoslib < 1.30 wrote naive UTC
        from datetime import UTC

        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def read_journal(journal: Mapping[str, Any]) -> JournalView:
    """Build the view of one journal (a dict loaded from `journal.json`)."""
    experiment = _mapping(journal.get("experiment"))
    hypo = _mapping(experiment.get("steady-state-hypothesis"))
    states = _mapping(journal.get("steady_states"))
    before = _probe_runs(states.get("before"), Phase.BEFORE)
    after = _probe_runs(states.get("after"), Phase.AFTER)
    during: list[ProbeResult] = []
    for state in _sequence(states.get("during")):
        during.extend(_probe_runs(state, Phase.DURING))

    declared = [str(_mapping(p).get("name", "?")) for p in _sequence(hypo.get("probes"))]
    rows = _hypothesis_rows(declared, before, during, after)
    timeline = _timeline(journal)
    windows = windows_from_journal(journal)
    status = journal.get("status")
    deviated = bool(journal.get("deviated"))
    verdict, reason, failing = _verdict(
        status if isinstance(status, str) else None,
        deviated,
        before,
        during,
        after,
        timeline,
        states,
    )
    warnings = tuple(
        f"{e.section} {e.activity_type} '{e.name}' failed: {e.exception or 'no detail'}"
        for e in timeline
        if e.status == "failed"
    )
    return JournalView(
        title=str(experiment.get("title") or "untitled experiment"),
        description=_opt_str(experiment.get("description")),
        hypothesis_title=_opt_str(hypo.get("title")),
        status=status if isinstance(status, str) else None,
        deviated=deviated,
        started_at=parse_timestamp(journal.get("start")),
        ended_at=parse_timestamp(journal.get("end")),
        verdict=verdict,
        reason=reason,
        failing_probe=failing,
        failing_probes=tuple(dict.fromkeys(p.name for p in after if p.met is False)),
        hypothesis=rows,
        timeline=timeline,
        windows=windows,
        warnings=warnings,
    )


def probe_from_run(run: Mapping[str, Any], phase: Phase) -> ProbeResult:
    """One hypothesis probe run -> ProbeResult, reading the SLO probe shape when it is there."""
    activity = _mapping(run.get("activity"))
    output = run.get("output")
    met_raw = run.get("tolerance_met")
    met = met_raw if isinstance(met_raw, bool) else None
    common: dict[str, Any] = {
        "name": str(activity.get("name", "?")),
        "phase": phase,
        "met": met,
        "status": str(run.get("status") or "unknown"),
        "raw_output": output,
        "exception": _exception_text(run.get("exception")),
        "started_at": parse_timestamp(run.get("start")),
        "ended_at": parse_timestamp(run.get("end")),
    }
    if isinstance(output, Mapping) and "ok" in output and "value" in output:
        value = output.get("value")
        threshold = output.get("threshold")
        return ProbeResult(
            **common,
            value=_finite_or_none(value),
            threshold=_threshold_text(threshold),
            query=_opt_str(output.get("query")),
            description=_opt_str(output.get("description")),
            structured=True,
        )
    return ProbeResult(**common)


def windows_from_journal(journal: Mapping[str, Any]) -> tuple[FaultWindow, ...]:
    """Fault windows opened/closed by method (and rollback) action outputs.

    An output dict with `"window": {"id","kind","target","started_at"}` opens a window; one with
    `"window": {"id","ended_at"}` closes it. Rollbacks may close a window the method left open.
    """
    opened: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for section in ("run", "rollbacks"):
        for run in _sequence(journal.get(section)):
            output = _mapping(run).get("output")
            if not isinstance(output, Mapping):
                continue
            win = output.get("window")
            if not isinstance(win, Mapping) or "id" not in win:
                continue
            wid = str(win["id"])
            start = parse_timestamp(win.get("started_at"))
            end = parse_timestamp(win.get("ended_at"))
            if start is not None and wid not in opened:
                opened[wid] = {
                    "kind": str(win.get("kind") or "fault"),
                    "target": str(win.get("target") or ""),
                    "started_at": start,
                    "ended_at": end,
                }
                order.append(wid)
            elif wid in opened and end is not None and opened[wid]["ended_at"] is None:
                opened[wid]["ended_at"] = end
    return tuple(
        FaultWindow(
            id=wid,
            kind=opened[wid]["kind"],
            target=opened[wid]["target"],
            started_at=opened[wid]["started_at"],
            ended_at=opened[wid]["ended_at"],
            source="journal",
        )
        for wid in order
    )


def windows_from_file(data: Any) -> tuple[FaultWindow, ...]:
    """`windows.json`: a list of `{"id","kind","target","started_at","ended_at"}`."""
    windows: list[FaultWindow] = []
    for item in _sequence(data):
        entry = _mapping(item)
        start = parse_timestamp(entry.get("started_at"))
        if start is None:
            continue
        windows.append(
            FaultWindow(
                id=str(entry.get("id") or f"window-{len(windows) + 1}"),
                kind=str(entry.get("kind") or "fault"),
                target=str(entry.get("target") or ""),
                started_at=start,
                ended_at=parse_timestamp(entry.get("ended_at")),
                source="windows.json",
            )
        )
    return tuple(windows)


def _threshold_text(threshold: Any) -> float | str | None:
    """A probe's threshold as shown: a number, or `key=value` pairs for a dict of limits."""
    if isinstance(threshold, bool) or threshold is None:
        return None
    if isinstance(threshold, int | float | str):
        return threshold
    if isinstance(threshold, Mapping):
        pairs = [f"{k}={v}" for k, v in threshold.items() if v is not None]
        return ", ".join(pairs) or None
    return str(threshold)


def describe_probe(probe: ProbeResult) -> str:
    """A short sentence about one probe result: name, measured value and threshold."""
    if probe.structured:
        value = "no data" if probe.value is None else format(probe.value, ".6g")
        sentence = f"'{probe.name}' measured {value} against threshold {probe.threshold}"
        return sentence + (f" ({probe.description})" if probe.description else "")
    if probe.exception:
        return f"'{probe.name}' raised: {probe.exception}"
    return f"'{probe.name}' returned {_excerpt(probe.raw_output, 120)}"


def _verdict(
    status: str | None,
    deviated: bool,
    before: Sequence[ProbeResult],
    during: Sequence[ProbeResult],
    after: Sequence[ProbeResult],
    timeline: Sequence[TimelineEvent],
    states: Mapping[str, Any],
) -> tuple[Verdict, str, str | None]:
    failed_after = next((p for p in after if p.met is False), None)
    failed_during = next((p for p in during if p.met is False), None)
    failed_before = next((p for p in before if p.met is False), None)
    method = [e for e in timeline if e.section == "method"]
    if status in ("interrupted", "aborted"):
        last = next((e for e in reversed(method) if e.status != "not run"), None)
        where = f" during or after '{last.name}'" if last else " before the method ran"
        rollbacks = [e for e in timeline if e.section == "rollback"]
        rb = f"; {len(rollbacks)} rollback(s) ran" if rollbacks else "; no rollback ran"
        return Verdict.INTERRUPTED, f"The run was {status}{where}{rb}.", None
    if deviated or failed_after is not None or failed_during is not None:
        probe = failed_after or failed_during
        if probe is not None:
            phase = "after the method" if probe is failed_after else "during the method"
            return (
                Verdict.DEVIATED,
                f"The hypothesis did not hold {phase}: {describe_probe(probe)}.",
                probe.name,
            )
        return Verdict.DEVIATED, "Chaos Toolkit marked the run deviated.", None
    if status == "failed" or failed_before is not None:
        if failed_before is not None:
            return (
                Verdict.FAILED,
                "The steady state was not met before the method, so no fault was injected: "
                f"{describe_probe(failed_before)}.",
                failed_before.name,
            )
        failed = next((e for e in timeline if e.status == "failed"), None)
        if failed is not None:
            return (
                Verdict.FAILED,
                f"The run failed at {failed.section} {failed.activity_type} '{failed.name}': "
                f"{failed.exception or 'no detail'}.",
                None,
            )
        return Verdict.FAILED, "Chaos Toolkit marked the run failed.", None
    if status == "completed":
        n = len(before) + len(after) + len(during)
        actions = sum(1 for e in method if e.activity_type == "action")
        return (
            Verdict.PASSED,
            f"The hypothesis held: {n} probe run(s) before, during and after "
            f"the method's {actions} action(s) all met their tolerance.",
            None,
        )
    if not states and status is None:
        return Verdict.INTERRUPTED, "The journal has no status: the run did not finish.", None
    return Verdict.INTERRUPTED, f"The run ended with status '{status}'.", None


def _hypothesis_rows(
    declared: Sequence[str],
    before: Sequence[ProbeResult],
    during: Sequence[ProbeResult],
    after: Sequence[ProbeResult],
) -> tuple[HypothesisRow, ...]:
    names = list(declared)
    for probe in (*before, *during, *after):
        if probe.name not in names:
            names.append(probe.name)
    return tuple(
        HypothesisRow(
            name=name,
            before=next((p for p in before if p.name == name), None),
            during=tuple(p for p in during if p.name == name),
            after=next((p for p in after if p.name == name), None),
        )
        for name in names
    )


def _timeline(journal: Mapping[str, Any]) -> tuple[TimelineEvent, ...]:
    events: list[TimelineEvent] = []
    for section, key in (("method", "run"), ("rollback", "rollbacks")):
        for item in _sequence(journal.get(key)):
            run = _mapping(item)
            activity = _mapping(run.get("activity"))
            output = run.get("output")
            events.append(
                TimelineEvent(
                    name=str(activity.get("name", "?")),
                    section=section,
                    activity_type=str(activity.get("type") or "activity"),
                    status=str(run.get("status") or "unknown"),
                    started_at=parse_timestamp(run.get("start")),
                    ended_at=parse_timestamp(run.get("end")),
                    background=bool(activity.get("background")),
                    exception=_exception_text(run.get("exception")),
                    output_excerpt=None if output is None else _excerpt(output),
                )
            )
    return tuple(events)


def _probe_runs(state: Any, phase: Phase) -> list[ProbeResult]:
    runs = _sequence(_mapping(state).get("probes"))
    return [probe_from_run(_mapping(run), phase) for run in runs]


def _exception_text(value: Any) -> str | None:
    if not value:
        return None
    if isinstance(value, list | tuple):
        lines = [str(line).strip() for line in value if str(line).strip()]
        return lines[-1] if lines else None
    return str(value).strip() or None


def _excerpt(value: Any, limit: int = _OUTPUT_EXCERPT_CHARS) -> str:
    try:
        text = json.dumps(value, default=str, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _finite_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sequence(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
