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
    stopped and fired again in that time. Reports `time_to_alert_seconds`."""
    start = judged.start
    q = f'max(ALERTS{{alertname="{alertname}",alertstate="firing"}})'
    stop = max(min(clock.now(), start + within_seconds), start + 1)
    series = judged.prometheus.range_series(q, start, stop, step=1.0)
    # seconds after the start at which the alert was firing (absent steps: not firing)
    firing = {round(t - start) for s in series for t, v in s.points if v >= 1}
    at_start = 0 in firing
    tta = next((float(k) for k in sorted(firing) if k > 0 and k - 1 not in firing), None)
    if tta is not None and tta > within_seconds:
        tta = None
    if tta is not None:
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
    )
