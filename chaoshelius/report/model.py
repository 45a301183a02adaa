"""The report's data model: what a run report and the index show, built before any HTML.

Everything here is plain typed data (dataclasses) so it can be unit-tested and serialised to
`summary.json` without a template in sight. Values are kept as measured (floats, seconds since
the epoch, ratios in 0..1); formatting happens only in the templates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

SUMMARY_SCHEMA_VERSION = 1


class Verdict(StrEnum):
    """The one-word outcome of a run, as shown at the top of its report."""

    PASSED = "passed"  # completed, every hypothesis probe held
    DEVIATED = "deviated"  # completed, a hypothesis probe did not hold
    FAILED = "failed"  # the steady state was not met before the method, or an activity failed it
    INTERRUPTED = "interrupted"  # interrupted / aborted (SIGTERM, Ctrl-C, no journal)
    ABORTED = "aborted"  # stopped by a safeguard (stop condition): users hurt beyond a limit
    NOT_JUDGED = "not judged"  # dry run, or the fault never happened: nothing can be claimed
    NOT_RUN = "not run"  # planned but never started (suite interrupted, chaos wrote no journal)


# verdicts that prove nothing: never as expected, a failure (or error) in JUnit and the index
UNJUDGED = frozenset({Verdict.NOT_JUDGED, Verdict.NOT_RUN})


class Phase(StrEnum):
    """When a hypothesis probe ran."""

    BEFORE = "before"
    DURING = "during"
    AFTER = "after"


@dataclass(frozen=True)
class ProbeResult:
    """One hypothesis probe run, in one phase.

    `value`/`threshold`/`query`/`description` come from the harness's SLO probe output
    (`{"ok","value","threshold","query","description","window"}`); for any other output they
    are None and `raw_output` holds what the probe returned, shown as JSON.
    """

    name: str
    phase: Phase
    met: bool | None  # tolerance met; None when the probe never ran to a verdict
    status: str  # chaoslib activity status: succeeded / failed
    value: float | None = None
    threshold: float | str | None = None
    query: str | None = None
    description: str | None = None
    raw_output: Any = None
    structured: bool = False  # True when the output matched the SLO probe shape
    exception: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    func: str | None = None  # the python provider's function, e.g. "client_success_ratio"
    limits: dict[str, Any] | None = None  # the probe's own `threshold`, as a dict of limits
    unit: str = ""  # unit of `value` (report.units): "%", "s", "x" or "" (a count)


@dataclass(frozen=True)
class HypothesisRow:
    """One probe of the steady-state hypothesis, across the phases it ran in."""

    name: str
    before: ProbeResult | None
    during: tuple[ProbeResult, ...]
    after: ProbeResult | None


@dataclass(frozen=True)
class TimelineEvent:
    """An activity of the method or of the rollbacks, placed in time."""

    name: str
    section: str  # "method" or "rollback"
    activity_type: str  # action / probe
    status: str  # succeeded / failed / not run
    started_at: float | None
    ended_at: float | None
    background: bool = False
    exception: str | None = None
    output_excerpt: str | None = None


@dataclass(frozen=True)
class FaultWindow:
    """A period during which a fault was active. `ended_at` None: never closed in the record."""

    id: str
    kind: str
    target: str
    started_at: float
    ended_at: float | None
    source: str  # windows.json / journal / prometheus

    def end_or(self, default: float) -> float:
        return self.ended_at if self.ended_at is not None else default


@dataclass(frozen=True)
class Point:
    t: float
    v: float


@dataclass(frozen=True)
class Series:
    """One labelled time series from a Prometheus range query (or Locust's history)."""

    label: str
    labels: dict[str, str]
    points: tuple[Point, ...]


@dataclass(frozen=True)
class SeriesSet:
    """The result of one chart query: zero or more series, or why there is none."""

    key: str
    query: str
    series: tuple[Series, ...]
    error: str | None = None


@dataclass(frozen=True)
class Kpis:
    """Resilience KPIs of a run. None means: could not be measured (said why in `notes`)."""

    availability_during_fault: float | None = None  # successful / all client requests, 0..1
    requests_during_fault: float | None = None  # client requests counted in the fault window
    time_to_fallback_s: float | None = None  # fault start -> first fallback gauge at 1
    time_to_recover_s: float | None = None  # fault end -> healthy again for the rest of the run
    worst_p99_s: float | None = None  # highest client p99 from the fault's start to recovery
    fault_duration_s: float | None = None
    notes: tuple[str, ...] = ()
    p99_before_fault_s: float | None = None  # the client's rolling p99 as the fault starts
    p99_during_fault_s: float | None = None  # highest client p99 during the fault span
    load_rps_during_fault: float | None = None  # client requests/s during the fault span
    worst_p99_until_s: float | None = None  # end of the worst-p99 span, s after the fault end

    @property
    def p99_ratio(self) -> float | None:
        """p99 during the fault / p99 before it (None when either is unmeasured or zero)."""
        before, during = self.p99_before_fault_s, self.p99_during_fault_s
        return None if not before or during is None else during / before

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["notes"] = list(self.notes)
        return data


KPI_LABELS: dict[str, str] = {
    "availability_during_fault": "Availability during the fault",
    "time_to_fallback_s": "Time to fallback",
    "time_to_recover_s": "Time to recover",
    "worst_p99_s": "Worst p99, fault + recovery",
    "load_rps_during_fault": "Load during the fault",
}

# how a KPI is shown: one unit per KPI, everywhere (run report, index columns, suite line)
KPI_UNITS: dict[str, str] = {
    "availability_during_fault": "%",
    "time_to_fallback_s": "s",
    "time_to_recover_s": "s",
    "worst_p99_s": "ms",
    "load_rps_during_fault": "req/s",
    "fault_duration_s": "s",
    "requests_during_fault": "",
    "p99_before_fault_s": "ms",
    "p99_during_fault_s": "ms",
}

# which clock each KPI reads: shown under it, so two numbers are never compared across clocks
KPI_CLOCKS: dict[str, str] = {
    "availability_during_fault": "successful / all client requests between the fault's start "
    "and end",
    "time_to_fallback_s": "from the fault's start to the first pod in fallback",
    "time_to_recover_s": "from the fault's end until no pod is in fallback, no fault is active "
    "and client success is at least 99 % for the rest of the run",
    "worst_p99_s": "highest client p99 from the fault's start to the end of the recovery "
    "(Locust's warm-up before the fault is left out)",
    "load_rps_during_fault": "client requests completed per second during the fault",
}


@dataclass(frozen=True)
class LocustRow:
    """One row of `locust_stats.csv` (times in milliseconds, as Locust writes them)."""

    method: str
    name: str
    requests: int
    failures: int
    median_ms: float | None
    average_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    rps: float | None


@dataclass(frozen=True)
class LocustFailure:
    method: str
    name: str
    error: str
    occurrences: int


@dataclass(frozen=True)
class LocustStats:
    rows: tuple[LocustRow, ...]
    failures: tuple[LocustFailure, ...]
    history: tuple[dict[str, str], ...] = ()

    @property
    def total(self) -> LocustRow | None:
        for row in self.rows:
            if row.name == "Aggregated":
                return row
        return None


@dataclass(frozen=True)
class RunMeta:
    """Optional `meta.json` written by the suite runner next to the journal."""

    experiment: str | None = None  # stable key, e.g. the experiment file stem
    variant: str | None = None  # e.g. "negative:fallback-disabled"
    expected_verdict: Verdict = Verdict.PASSED  # a negative control expects "deviated"
    suite_id: str | None = None
    expected_failing_probe: str | None = None  # a negative control names the probe that bites
    expected_failing_probes: tuple[str, ...] = ()  # ... or several, all of which must fail


@dataclass(frozen=True)
class RunSummary:
    """What `summary.json` holds: the verdict and KPIs the index, history and JUnit read."""

    run_id: str
    experiment_key: str
    experiment_title: str
    verdict: Verdict
    reason: str
    status: str | None  # chaoslib journal status
    deviated: bool
    started_at: float | None
    ended_at: float | None
    duration_s: float | None
    failing_probe: str | None
    kpis: Kpis
    expected_verdict: Verdict = Verdict.PASSED
    variant: str | None = None
    suite_id: str | None = None
    prometheus_error: str | None = None
    schema_version: int = SUMMARY_SCHEMA_VERSION
    expected_failing_probe: str | None = None
    resilience_score: float | None = None  # 0..100, weighted by probe; None: not judged
    score_detail: str | None = None  # how the score was made, shown next to it
    expected_failing_probes: tuple[str, ...] = ()
    failing_probes: tuple[str, ...] = ()

    @property
    def as_expected(self) -> bool:
        """The expected verdict, and (negative controls) the failure on every expected probe
        (among all the probes that failed after the method). A run not judged or not run never
        is: it proved nothing, whatever was expected of it."""
        if self.verdict in UNJUDGED or self.verdict != self.expected_verdict:
            return False
        expected = self.expected_failing_probes or (
            (self.expected_failing_probe,) if self.expected_failing_probe else ()
        )
        failing = set(self.failing_probes) | ({self.failing_probe} if self.failing_probe else set())
        return all(probe in failing for probe in expected)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = str(self.verdict)
        data["expected_verdict"] = str(self.expected_verdict)
        data["kpis"] = self.kpis.as_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        kpi_data = dict(data.get("kpis") or {})
        kpi_data["notes"] = tuple(kpi_data.get("notes") or ())
        known = set(Kpis.__dataclass_fields__)
        kpis = Kpis(**{k: v for k, v in kpi_data.items() if k in known})
        return cls(
            run_id=str(data["run_id"]),
            experiment_key=str(data["experiment_key"]),
            experiment_title=str(data.get("experiment_title") or data["experiment_key"]),
            verdict=Verdict(data["verdict"]),
            reason=str(data.get("reason") or ""),
            status=data.get("status"),
            deviated=bool(data.get("deviated")),
            started_at=_opt_float(data.get("started_at")),
            ended_at=_opt_float(data.get("ended_at")),
            duration_s=_opt_float(data.get("duration_s")),
            failing_probe=data.get("failing_probe"),
            kpis=kpis,
            expected_verdict=Verdict(data.get("expected_verdict") or Verdict.PASSED),
            variant=data.get("variant"),
            suite_id=data.get("suite_id"),
            prometheus_error=data.get("prometheus_error"),
            schema_version=int(data.get("schema_version") or SUMMARY_SCHEMA_VERSION),
            expected_failing_probe=data.get("expected_failing_probe"),
            resilience_score=_opt_float(data.get("resilience_score")),
            score_detail=data.get("score_detail"),
            expected_failing_probes=tuple(data.get("expected_failing_probes") or ()),
            failing_probes=tuple(data.get("failing_probes") or ()),
        )


def unexpected_counts(summaries: Iterable[RunSummary]) -> str:
    """The runs not as expected, counted by what happened, in the verdicts' order:
    "1 deviated, 2 not judged, 1 not run" ("" when every run was as expected)."""
    counts: dict[tuple[int, str], int] = {}
    order = list(Verdict)
    for s in summaries:
        if s.as_expected:
            continue
        if s.verdict in UNJUDGED or s.verdict != s.expected_verdict:
            kind = str(s.verdict)
        else:  # a negative control that deviated, but not on the probe it guards
            kind = "deviated on another probe"
        rank = order.index(s.verdict)
        counts[(rank, kind)] = counts.get((rank, kind), 0) + 1
    return ", ".join(f"{n} {kind}" for (_, kind), n in sorted(counts.items()))


@dataclass(frozen=True)
class Link:
    label: str
    href: str


@dataclass(frozen=True)
class RunReport:
    """Everything the run report shows."""

    summary: RunSummary
    experiment_description: str | None
    hypothesis_title: str | None
    hypothesis: tuple[HypothesisRow, ...]
    timeline: tuple[TimelineEvent, ...]
    windows: tuple[FaultWindow, ...]
    charts: tuple[SeriesSet, ...]
    locust: LocustStats | None
    links: tuple[Link, ...]
    warnings: tuple[str, ...] = ()
    prometheus_url: str | None = None
    series_fetched_at: float | None = None
    range_start: float | None = None
    range_end: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
