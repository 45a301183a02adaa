"""Build a run's report (`build_run_report`) and the index across runs (`build_index`).

Inputs and outputs of a run directory are the contract in docs/reports.md:
reads `journal.json`, `windows.json`, `meta.json`, `locust_*.csv`; writes `series.json`,
`summary.json`, `report.html`. A missing or broken input never stops the report: it says what
is missing instead.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaoshelius.report import kpis as kpi_mod
from chaoshelius.report import score as score_mod
from chaoshelius.report.exceptions import PrometheusUnavailable, RunDirectoryError
from chaoshelius.report.journal import JournalView, read_journal, windows_from_file
from chaoshelius.report.locust import history_series, read_locust
from chaoshelius.report.model import (
    FaultWindow,
    Kpis,
    Link,
    LocustStats,
    RunMeta,
    RunReport,
    RunSummary,
    Series,
    SeriesSet,
    Verdict,
)
from chaoshelius.report.prometheus import (
    DEFAULT_PROMETHEUS_URL,
    DEFAULT_TIMEOUT_S,
    fetch_series,
    series_sets,
    unavailable_document,
)

JOURNAL_FILE = "journal.json"
WINDOWS_FILE = "windows.json"
META_FILE = "meta.json"
SERIES_FILE = "series.json"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
SAFEGUARD_FILE = "safeguard.json"  # written by chaoshelius.controls.safeguards when it trips
NOT_STEADY_FILE = "not_steady.json"  # written by chaoshelius.controls.steady_gate when it refuses
# any of these in a run directory: the experiment started (its load, a fault, a control)
STARTED_FILES = (
    WINDOWS_FILE,
    "locust_stats.csv",
    "locust_stats_history.csv",
    SAFEGUARD_FILE,
    NOT_STEADY_FILE,
)
MARGIN_S = 15.0  # charts start a little before the run and end a little after it

_LINKED_FILES = (
    (JOURNAL_FILE, "Chaos Toolkit journal"),
    ("locust_stats.csv", "Locust stats"),
    ("locust_failures.csv", "Locust failures"),
    ("locust_stats_history.csv", "Locust stats history"),
    (WINDOWS_FILE, "fault windows"),
    (SAFEGUARD_FILE, "safeguard that stopped the run"),
    (NOT_STEADY_FILE, "why no fault was injected"),
    (SERIES_FILE, "Prometheus series"),
    (SUMMARY_FILE, "summary"),
)


def build_run_report(
    run_dir: str | Path,
    prometheus_url: str | None = DEFAULT_PROMETHEUS_URL,
    *,
    offline: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> RunReport:
    """Build `report.html`, `summary.json` and `series.json` in `run_dir`; return the model.

    `offline=True` (or `prometheus_url=None`) reuses the run's `series.json` instead of asking
    Prometheus. When Prometheus is unreachable the report says so (and keeps a previously
    fetched `series.json` if there is one).
    """
    from chaoshelius.report.render import render_run  # jinja2 only when rendering

    report = load_run(run_dir, prometheus_url, offline=offline, timeout_s=timeout_s)
    path = Path(run_dir)
    _write_json(path / SUMMARY_FILE, report.summary.as_dict())
    (path / REPORT_FILE).write_text(render_run(report), encoding="utf-8")
    return report


def load_run(
    run_dir: str | Path,
    prometheus_url: str | None = DEFAULT_PROMETHEUS_URL,
    *,
    offline: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> RunReport:
    """The report model of one run; writes `series.json` when it fetched from Prometheus."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RunDirectoryError(f"{path} is not a run directory")
    warnings: list[str] = []

    journal, journal_problem = _load_json(path / JOURNAL_FILE)
    if journal_problem:
        warnings.append(journal_problem)
    view = read_journal(journal if isinstance(journal, Mapping) else {})
    warnings.extend(view.warnings)
    meta = _read_meta(path, warnings)
    windows = _declared_windows(path, view.windows, warnings)
    run_start, run_end = _run_range(view.started_at, view.ended_at, view.timeline, windows)

    # series: fetch, or reuse series.json
    series_doc, prometheus_error = _series_document(
        path, prometheus_url, run_start, run_end, offline=offline, timeout_s=timeout_s
    )
    sets = series_sets(series_doc) if series_doc else {}
    locust = read_locust(path)
    series = _with_locust_history(sets, locust, warnings)
    if not windows:
        windows = _windows_from_fault_series(series.get("fault_active", ()))

    kpis = kpi_mod.compute_kpis(series, windows, run_start, run_end)
    verdict, reason = _verdict(path, view, bool(journal), journal_problem, warnings)
    experiment = journal.get("experiment") if isinstance(journal, Mapping) else None
    summary = _summary(path, view, meta, (verdict, reason), kpis, experiment, prometheus_error)
    links = tuple(Link(label, name) for name, label in _LINKED_FILES if (path / name).is_file())
    fetched = series_doc.get("fetched_at") if series_doc else None
    return RunReport(
        summary=summary,
        experiment_description=view.description,
        hypothesis_title=view.hypothesis_title,
        hypothesis=view.hypothesis,
        timeline=view.timeline,
        windows=windows,
        charts=tuple(sets.values()),
        locust=locust,
        links=links,
        warnings=tuple(warnings),
        prometheus_url=(series_doc.get("prometheus_url") if series_doc else prometheus_url),
        series_fetched_at=float(fetched) if isinstance(fetched, int | float) else None,
        range_start=run_start,
        range_end=run_end,
    )


def _declared_windows(
    path: Path, from_journal: tuple[FaultWindow, ...], warnings: list[str]
) -> tuple[FaultWindow, ...]:
    """The fault windows of windows.json when it is there, else those the journal shows."""
    windows_doc, windows_problem = _load_json(path / WINDOWS_FILE)
    if windows_doc is not None:
        return windows_from_file(windows_doc)
    if windows_problem and (path / WINDOWS_FILE).exists():
        warnings.append(windows_problem)
    return from_journal


def _with_locust_history(
    sets: dict[str, SeriesSet], locust: LocustStats | None, warnings: list[str]
) -> dict[str, tuple[Series, ...]]:
    """The series by key; the client-side ones from Locust's stats history when Prometheus
    gave none (added to `sets` too, so the report charts them)."""
    series: dict[str, tuple[Series, ...]] = {k: s.series for k, s in sets.items()}
    if locust is not None and not series.get("client_requests"):
        from_locust = history_series(locust)
        if from_locust:
            warnings.append("client-side series taken from Locust's stats history")
            for key, value in from_locust.items():
                series[key] = value
                if not sets.get(key) or not sets[key].series:
                    sets[key] = SeriesSet(key, "locust_stats_history.csv", value)
    return series


def _verdict(
    path: Path,
    view: JournalView,
    has_journal: bool,
    journal_problem: str | None,
    warnings: list[str],
) -> tuple[Verdict, str]:
    """The journal's verdict; a run stopped by a safeguard is aborted, one the steady gate
    refused is not judged, a run without a journal that shows no sign of having started is
    not run, and any other run without a usable journal is interrupted."""
    if not (path / JOURNAL_FILE).exists() and not _started(path):
        verdict = Verdict.NOT_RUN
        reason = (
            "The chaos process wrote no journal and nothing shows the experiment started "
            "(no load, no fault window): it never ran; see chaos.out and chaos.log."
        )
    elif journal_problem and not has_journal:
        verdict, reason = Verdict.INTERRUPTED, f"No usable journal: {journal_problem}."
    else:
        verdict, reason = view.verdict, view.reason
    if verdict is Verdict.INTERRUPTED and view.status in ("interrupted", "aborted"):
        tripped = _safeguard(path, view.started_at, warnings)
        refused = _not_steady(path, warnings)
        if tripped is not None:
            verdict, reason = Verdict.ABORTED, f"{tripped} {reason}"
        elif refused is not None:
            verdict, reason = Verdict.NOT_JUDGED, f"{refused} {reason}"
    return verdict, reason


def _started(path: Path) -> bool:
    """Whether a run directory shows the experiment started: its load, its faults, a control's
    record, or chaos's own line as it starts the experiment."""
    if any((path / name).is_file() for name in STARTED_FILES):
        return True
    try:
        return "Running experiment" in (path / "chaos.log").read_text(errors="replace")
    except OSError:
        return False


def _summary(
    path: Path,
    view: JournalView,
    meta: RunMeta,
    judged: tuple[Verdict, str],
    kpis: Kpis,
    experiment: Any,
    prometheus_error: str | None,
) -> RunSummary:
    verdict, reason = judged
    weights = score_mod.probe_weights(experiment if isinstance(experiment, Mapping) else {})
    score = score_mod.compute_score(view.hypothesis, verdict, weights)
    return RunSummary(
        run_id=path.name,
        experiment_key=meta.experiment or slugify(view.title),
        experiment_title=view.title,
        verdict=verdict,
        reason=reason,
        status=view.status,
        deviated=view.deviated,
        started_at=view.started_at,
        ended_at=view.ended_at,
        duration_s=(
            view.ended_at - view.started_at
            if view.started_at is not None and view.ended_at is not None
            else None
        ),
        failing_probe=view.failing_probe,
        kpis=kpis,
        expected_verdict=meta.expected_verdict,
        variant=meta.variant,
        suite_id=meta.suite_id,
        expected_failing_probe=meta.expected_failing_probe,
        expected_failing_probes=meta.expected_failing_probes,
        failing_probes=view.failing_probes,
        prometheus_error=prometheus_error,
        resilience_score=score.value,
        score_detail=score.detail,
    )


@dataclass(frozen=True)
class IndexResult:
    """What `build_index` wrote and what it read."""

    index_html: Path
    junit_xml: Path
    current: tuple[RunSummary, ...]  # one per experiment: the runs of this suite
    history: Mapping[str, tuple[RunSummary, ...]]  # experiment key -> all runs, oldest first
    problems: tuple[str, ...]


def build_index(reports_dir: str | Path = "reports", suite_id: str | None = None) -> IndexResult:
    """Write `index.html` and `junit.xml` in `reports_dir` from every `runs/*/summary.json`.

    Raises RunDirectoryError (and creates nothing) when `reports_dir` holds no run summary.
    The current suite is every run whose `suite_id` matches (when given: a `--repeat`
    campaign's runs and those that never started included), else the latest run of each
    experiment and variant (by start time). Older runs make the history and KPI trends.
    """
    from chaoshelius.report.junit import write_junit
    from chaoshelius.report.render import render_index

    root = Path(reports_dir)
    if not any(root.glob(f"runs/*/{SUMMARY_FILE}")):
        raise RunDirectoryError(
            f"{root}: no runs to index (no runs/*/{SUMMARY_FILE}); "
            "run `chaoshelius suite run` or `chaoshelius report build RUN_DIR` first"
        )
    summaries, problems = read_summaries(root)
    history: dict[str, list[RunSummary]] = {}
    for summary in summaries:  # a negative control's history is not its experiment's
        history.setdefault(history_key(summary), []).append(summary)
    for runs in history.values():
        runs.sort(key=_sort_key)
    current: list[RunSummary] = []
    for key in sorted(history):
        runs = history[key]
        if suite_id is not None:  # every run of the suite, a campaign's repeats in their order
            current += sorted((r for r in runs if r.suite_id == suite_id), key=_run_id)
        elif runs:
            current.append(runs[-1])
    frozen = {k: tuple(v) for k, v in history.items()}
    index_path = root / "index.html"
    index_path.write_text(
        render_index(current, frozen, problems, generated_at=time.time()), encoding="utf-8"
    )
    junit_path = root / "junit.xml"
    write_junit(current, junit_path)
    return IndexResult(index_path, junit_path, tuple(current), frozen, tuple(problems))


def history_key(summary: RunSummary) -> str:
    """Runs are compared with runs of the same experiment *and* variant."""
    if summary.variant is None:
        return summary.experiment_key
    return f"{summary.experiment_key} [{summary.variant}]"


def read_summaries(reports_dir: Path) -> tuple[list[RunSummary], list[str]]:
    summaries: list[RunSummary] = []
    problems: list[str] = []
    for path in sorted(reports_dir.glob(f"runs/*/{SUMMARY_FILE}")):
        try:
            summaries.append(RunSummary.from_dict(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"{path.parent.name}: unreadable {SUMMARY_FILE} ({exc})")
    return summaries, problems


def slugify(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return slug or "experiment"


def _run_id(summary: RunSummary) -> str:
    return summary.run_id


def _sort_key(summary: RunSummary) -> tuple[float, str]:
    return (summary.started_at or 0.0, summary.run_id)


def _series_document(
    path: Path,
    prometheus_url: str | None,
    start: float | None,
    end: float | None,
    *,
    offline: bool,
    timeout_s: float,
) -> tuple[dict[str, Any] | None, str | None]:
    cached, _ = _load_json(path / SERIES_FILE)
    cached_doc = cached if isinstance(cached, dict) else None
    if offline or prometheus_url is None:
        if cached_doc is None:
            return None, "offline build and no series.json: no charts"
        return cached_doc, cached_doc.get("error")
    if start is None or end is None:
        return cached_doc, "no run start/end known: Prometheus not queried"
    try:
        doc = fetch_series(prometheus_url, start - MARGIN_S, end + MARGIN_S, timeout_s=timeout_s)
    except PrometheusUnavailable as exc:
        if cached_doc is not None and cached_doc.get("queries"):
            return cached_doc, f"{exc}; charts from the series.json fetched earlier"
        _write_json(path / SERIES_FILE, unavailable_document(prometheus_url, str(exc)))
        return None, str(exc)
    _write_json(path / SERIES_FILE, doc)
    return doc, None


def _run_range(
    start: float | None,
    end: float | None,
    timeline: Sequence[Any],
    windows: Sequence[FaultWindow],
) -> tuple[float | None, float | None]:
    times = [t for e in timeline for t in (e.started_at, e.ended_at) if t is not None]
    times += [t for w in windows for t in (w.started_at, w.ended_at) if t is not None]
    if start is None and times:
        start = min(times)
    if end is None and times:
        end = max(times)
    return start, end


def _windows_from_fault_series(series: Sequence[Series]) -> tuple[FaultWindow, ...]:
    """Windows from `helius_stack_fault_active{kind,target}`: each run of 1s is a window."""
    windows: list[FaultWindow] = []
    for s in series:
        opened: float | None = None
        last: float | None = None
        for p in s.points:
            if p.v >= 1.0 and opened is None:
                opened = p.t
            elif p.v < 1.0 and opened is not None:
                windows.append(_series_window(s, opened, p.t, len(windows)))
                opened = None
            last = p.t
        if opened is not None:
            windows.append(_series_window(s, opened, last, len(windows)))
    return tuple(windows)


def _series_window(s: Series, start: float, end: float | None, n: int) -> FaultWindow:
    return FaultWindow(
        id=f"prometheus-{n + 1}",
        kind=s.labels.get("kind", "fault"),
        target=s.labels.get("target", ""),
        started_at=start,
        ended_at=end,
        source="prometheus",
    )


def _safeguard(path: Path, run_start: float | None, warnings: list[str]) -> str | None:
    """The sentence about the safeguard that stopped the run, when `safeguard.json` says one
    tripped (the control writes it before it interrupts `chaos run`)."""
    data, problem = _load_json(path / SAFEGUARD_FILE)
    if problem and (path / SAFEGUARD_FILE).exists():
        warnings.append(problem)
    if not isinstance(data, Mapping) or not data.get("tripped_at"):
        return None
    at = data.get("tripped_at")
    when = (
        f" at +{float(at) - run_start:.0f} s"
        if isinstance(at, int | float) and run_start is not None
        else ""
    )
    return (
        f"Aborted by the safeguard '{data.get('name') or 'safeguard'}'{when}: "
        + str(data.get("reason") or "a stop condition was met").rstrip(".")
        + "; the method was stopped and the rollbacks played."
    )


def _not_steady(path: Path, warnings: list[str]) -> str | None:
    """The sentence about a fault the steady gate refused to inject (`not_steady.json`)."""
    data, problem = _load_json(path / NOT_STEADY_FILE)
    if problem and (path / NOT_STEADY_FILE).exists():
        warnings.append(problem)
    if not isinstance(data, Mapping) or not data.get("reason"):
        return None
    return (
        f"No fault was injected: the stack was {str(data['reason']).rstrip('.')}, "
        "so nothing is judged."
    )


def _read_meta(path: Path, warnings: list[str]) -> RunMeta:
    data, problem = _load_json(path / META_FILE)
    if problem and (path / META_FILE).exists():
        warnings.append(problem)
    if not isinstance(data, Mapping):
        return RunMeta()
    try:
        expected = Verdict(data.get("expected_verdict") or Verdict.PASSED)
    except ValueError:
        warnings.append(f"meta.json: unknown expected_verdict {data.get('expected_verdict')!r}")
        expected = Verdict.PASSED
    return RunMeta(
        experiment=_opt_str(data.get("experiment")),
        variant=_opt_str(data.get("variant")),
        expected_verdict=expected,
        suite_id=_opt_str(data.get("suite_id")),
        expected_failing_probe=_opt_str(data.get("expected_failing_probe")),
        expected_failing_probes=tuple(str(p) for p in data.get("expected_failing_probes") or ()),
    )


def _load_json(path: Path) -> tuple[Any, str | None]:
    if not path.is_file():
        return None, f"{path.name} is missing"
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, ValueError) as exc:
        return None, f"{path.name} is unreadable: {exc}"


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), encoding="utf-8")
    tmp.replace(path)


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
