"""Resilience KPIs computed from the fetched series and the fault windows (pure functions).

Definitions (also in docs/reports.md):

- fault span: from the earliest window start to the latest window end (an open window ends at
  the run's end). Several windows count as one span.
- availability during the fault: successful / all client requests counted in the span, from
  the cumulative `helius_client_requests_total` by outcome (counter resets handled like
  Prometheus' `increase`), resolution one query step.
- time to fallback: span start -> first sample in the span where any pod's
  `reco_engine_in_fallback_mode` is 1 (a pod that starts after the fault, in fallback until its
  first refresh, is recovery, not fallback).
- time to recover: span end -> first sample from which, to the end of the run, no pod is in
  fallback, no fault is active and the per-step client success ratio is >= RECOVERED_RATIO.
- worst p99: highest client-side p99 latency (seconds) from the fault span's start to the end
  of the recovery (span end + time to recover; the run's end when it did not recover); the
  server-side p99 when the client has none. Locust's warm-up before the fault is left out: it
  measures the load generator starting, not the fault. Not measured without a fault window.
- load during the fault: client requests counted in the span / the span's length (req/s).
- p99 before / during the fault: the client-side rolling p99 at the span's start (its rate
  window covers the seconds before the fault, like `latency_p99_ratio`'s baseline), and the
  highest within the span (their ratio says how much the fault slowed what users saw).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from chaoshelius.report.model import FaultWindow, Kpis, Point, Series

RECOVERED_RATIO = 0.99
NEVER_FELL_BACK = "the fallback gauge never reached 1 during the fault"


def fault_span(windows: Sequence[FaultWindow], run_end: float | None) -> tuple[float, float] | None:
    if not windows:
        return None
    start = min(w.started_at for w in windows)
    fallback_end = run_end if run_end is not None else start
    end = max(w.end_or(fallback_end) for w in windows)
    return start, max(start, end)


def compute_kpis(
    series: Mapping[str, Sequence[Series]],
    windows: Sequence[FaultWindow],
    run_start: float | None,
    run_end: float | None,
) -> Kpis:
    notes: list[str] = []
    span = fault_span(windows, run_end)
    requests = series.get("client_requests", ())
    fallback = series.get("fallback", ())

    if span is None:
        notes.append("no fault window recorded: fault KPIs (and the worst p99) not measured")
        return Kpis(notes=tuple(notes))
    start, end = span

    availability: float | None = None
    counted: float | None = None
    ok = _by_label(requests, "outcome", "success")
    bad = _by_label(requests, "outcome", "failure")
    if ok is None and bad is None:
        notes.append("no client request counts: availability not measured")
    else:
        n_ok = increase(ok.points if ok else (), start, end)
        n_bad = increase(bad.points if bad else (), start, end)
        counted = n_ok + n_bad
        if counted > 0:
            availability = n_ok / counted
        else:
            notes.append("no client requests counted during the fault: availability unknown")

    to_fallback: float | None = None
    if not fallback:
        notes.append("no fallback gauge series")
    else:
        first = _first_at_least(fallback, 1.0, start, end)
        if first is None:
            notes.append(NEVER_FELL_BACK)
        else:
            to_fallback = max(0.0, first - start)

    p99 = series.get("client_latency_p99", ())
    # the rolling p99 as the fault starts: its rate window is the few seconds before the fault,
    # the baseline `latency_p99_ratio` uses too (an earlier sample would reach into the ramp-up)
    p99_before = _last_at_or_before(p99, start)
    p99_during = _max_between(p99, start, end)
    to_recover, note = time_to_recover(series, end, run_end)
    if note:
        notes.append(note)
    until = end + to_recover if to_recover is not None else run_end
    worst = _max_between(p99, start, until)
    if worst is None:
        worst = _max_between(series.get("server_latency_p99", ()), start, until)
        if worst is not None:
            notes.append("worst p99 is server-side: no client latency series")
        else:
            notes.append("no latency data for the worst p99")
    duration = end - start
    rps = counted / duration if counted is not None and duration > 0 else None
    return Kpis(
        availability_during_fault=availability,
        requests_during_fault=counted,
        time_to_fallback_s=to_fallback,
        time_to_recover_s=to_recover,
        worst_p99_s=worst,
        fault_duration_s=duration,
        notes=tuple(notes),
        p99_before_fault_s=p99_before,
        p99_during_fault_s=p99_during,
        load_rps_during_fault=rps,
        worst_p99_until_s=None if until is None else until - end,
    )


def increase(points: Sequence[Point], start: float, end: float) -> float:
    """Counter increase over [start, end] from samples, counting resets as Prometheus does.

    The last sample at or before `start` is the baseline (the first sample when none is).
    """
    inside = [p for p in points if start < p.t <= end]
    before = [p for p in points if p.t <= start]
    chain = ([before[-1]] if before else []) + inside
    total = 0.0
    for prev, cur in zip(chain, chain[1:], strict=False):
        total += cur.v - prev.v if cur.v >= prev.v else cur.v
    return total


def time_to_recover(
    series: Mapping[str, Sequence[Series]], fault_end: float, run_end: float | None
) -> tuple[float | None, str | None]:
    """Seconds from the fault's end until the run is healthy for good, or (None, why)."""
    horizon = run_end if run_end is not None else float("inf")
    unhealthy: set[float] = set()
    seen: set[float] = set()

    for s in (*series.get("fallback", ()), *series.get("fault_active", ())):
        for p in s.points:
            if fault_end < p.t <= horizon:
                seen.add(p.t)
                if p.v >= 1.0:
                    unhealthy.add(p.t)

    requests = series.get("client_requests", ())
    ok = _by_label(requests, "outcome", "success")
    bad = _by_label(requests, "outcome", "failure")
    if ok is not None or bad is not None:
        for t, ratio in _step_ratios(ok, bad):
            if fault_end < t <= horizon:
                seen.add(t)
                if ratio is not None and ratio < RECOVERED_RATIO:
                    unhealthy.add(t)
    else:
        for s in series.get("client_success_ratio", ()):
            for p in s.points:
                if fault_end < p.t <= horizon:
                    seen.add(p.t)
                    if p.v < RECOVERED_RATIO:
                        unhealthy.add(p.t)

    if not seen:
        return None, "no samples after the fault ended: time to recover not measured"
    times = sorted(seen)
    if not unhealthy:
        return times[0] - fault_end, None
    last_bad = max(unhealthy)
    healthy_after = [t for t in times if t > last_bad]
    if not healthy_after:
        return None, "not recovered by the end of the run"
    return healthy_after[0] - fault_end, None


def _step_ratios(ok: Series | None, bad: Series | None) -> list[tuple[float, float | None]]:
    """Per-step success ratio from cumulative counters: (t, ratio or None without traffic)."""
    ok_by_t = {p.t: p.v for p in ok.points} if ok else {}
    bad_by_t = {p.t: p.v for p in bad.points} if bad else {}
    times = sorted(set(ok_by_t) | set(bad_by_t))
    out: list[tuple[float, float | None]] = []
    prev_ok = prev_bad = None
    for t in times:
        cur_ok, cur_bad = ok_by_t.get(t, prev_ok or 0.0), bad_by_t.get(t, prev_bad or 0.0)
        if prev_ok is not None and prev_bad is not None:
            d_ok = cur_ok - prev_ok if cur_ok >= prev_ok else cur_ok
            d_bad = cur_bad - prev_bad if cur_bad >= prev_bad else cur_bad
            total = d_ok + d_bad
            out.append((t, d_ok / total if total > 0 else None))
        prev_ok, prev_bad = cur_ok, cur_bad
    return out


def _by_label(series: Sequence[Series], name: str, value: str) -> Series | None:
    return next((s for s in series if s.labels.get(name) == value), None)


def _max_between(series: Sequence[Series], start: float | None, end: float | None) -> float | None:
    lo = start if start is not None else float("-inf")
    hi = end if end is not None else float("inf")
    values = [p.v for s in series for p in s.points if lo <= p.t <= hi]
    return max(values) if values else None


def _last_at_or_before(series: Sequence[Series], t: float) -> float | None:
    """The highest, over the series, of each one's last sample at or before `t`."""
    values = [pts[-1].v for s in series if (pts := [p for p in s.points if p.t <= t])]
    return max(values) if values else None


def _first_at_least(
    series: Sequence[Series], level: float, start: float, end: float | None
) -> float | None:
    hi = end if end is not None else float("inf")
    hits = [p.t for s in series for p in s.points if start <= p.t <= hi and p.v >= level]
    return min(hits) if hits else None
