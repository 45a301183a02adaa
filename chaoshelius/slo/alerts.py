"""Alerts: did Prometheus raise the alert the fault should raise, in time."""

from __future__ import annotations

from typing import Any

from chaoslib.types import Configuration, Secrets

from chaoshelius.slo import verdict as clock
from chaoshelius.slo.verdict import Judged, window_probe

__all__ = ["alert_fired"]


@window_probe()
def alert_fired(
    judged: Judged,
    alertname: str,
    within_seconds: float,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """`ok` when Prometheus alert `alertname` started firing within `within_seconds` of the
    fault's start (the ALERTS series, judged each second). An alert that was already firing
    when the fault started does not count (nothing shows this fault raised it) unless it
    stopped and fired again in that time; nor does one already *pending* then (its `for:`
    clock started before the fault, e.g. on a restart's own refresh failures, so it fires
    sooner than this fault alone would make it). Reports `time_to_alert_seconds`."""
    start = judged.start
    q = f'max(ALERTS{{alertname="{alertname}",alertstate="firing"}})'
    stop = max(min(clock.now(), start + within_seconds), start + 1)
    series = judged.prometheus.range_series(q, start, stop, step=1.0)
    # seconds after the start at which the alert was firing (absent steps: not firing)
    firing = {round(t - start) for s in series for t, v in s.points if v >= 1}
    at_start = 0 in firing
    pending_q = f'max(ALERTS{{alertname="{alertname}",alertstate="pending"}})'
    pending = judged.prometheus.range_series(pending_q, start, start + 1, step=1.0)
    pending_at_start = any(round(t - start) == 0 and v >= 1 for s in pending for t, v in s.points)
    tta = next((float(k) for k in sorted(firing) if k > 0 and k - 1 not in firing), None)
    if tta is not None and tta > within_seconds:
        tta = None
    if pending_at_start and not at_start:
        fired = f"fired {tta:.0f} s in" if tta is not None else "did not fire in time"
        description = (
            f"alert {alertname} was already pending when the fault started (its for: clock "
            f"began before the fault), so it {fired}: that does not show this fault raised it"
        )
        tta = None
    elif tta is not None:
        description = f"alert {alertname} started firing {tta:.0f} s after the fault started"
    elif at_start:
        description = (
            f"alert {alertname} was already firing when the fault started and did not fire "
            f"anew within {within_seconds:g} s: nothing shows this fault raised it"
        )
    else:
        description = f"alert {alertname} never fired within {within_seconds:g} s of the fault"
    return judged.result(
        tta is not None,
        tta,
        description,
        q,
        time_to_alert_seconds=tta,
        firing_at_start=at_start,
        pending_at_start=pending_at_start,
    )
