"""Proof the fault bit: a counter of the failure it causes grew, the targets it takes away were
gone (Prometheus's own view, not the fault action's word)."""

from __future__ import annotations

from typing import Any

from chaoslib.types import Configuration, Secrets

from chaoshelius.slo import queries as pq
from chaoshelius.slo.verdict import Judged, fmt_number, window_probe

__all__ = ["counter_grew", "targets_went_down"]


@window_probe()
def counter_grew(
    judged: Judged,
    selector: str,
    min_increase: float = 1.0,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Proof the fault reached the service: the counter `selector` (summed) grew by at least
    `min_increase` during the window, e.g. `reco_engine_refresh_failures_total`.

    Per series, compares the last value at the window's end with the last value before its
    start (a series born during the fault counts from 0, so the first increment is not lost as
    it would be with `increase()`; a series gone before the end, e.g. a replaced pod's, counts
    nothing), then sums. A series that went down (a counter reset) counts from 0.
    """
    start, end = judged.start, judged.end
    span = pq.duration(end - start + 5)
    at_end = f"last_over_time({selector}[{span}] @ {end:.3f})"
    before = f"last_over_time({selector}[5m] @ {start:.3f})"
    # per series: end - before (0 for a series born in the window); a reset counts from 0
    delta = f"({at_end} - ({before} or {at_end} * 0))"
    q = f"sum(({delta} >= 0) or {at_end})"
    value = judged.prometheus.instant_value(q)
    return judged.result(
        value is not None and value >= min_increase,
        value,
        f"{selector} grew by {fmt_number(value)} during the fault (need >= {min_increase:g})",
        q,
    )


@window_probe()
def targets_went_down(
    judged: Judged,
    app: str,
    zone: str | None = None,
    max_up: int = 0,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Proof pods were really gone: at least one `up` target of `app` (in `zone`) before the
    fault, and at most `max_up` at some point during it (Prometheus's own scrapes)."""
    start, end = judged.start, judged.end
    sel = pq.selector("up", app=app, zone=zone)
    # 15 s: three scrapes on a cluster (5 s), fifteen locally; one at 5 s could hold none
    q_before = f"count(last_over_time({sel}[15s] @ {start:.3f}) == 1)"
    q_during = (
        f"min_over_time((count({sel} == 1) or vector(0))[{pq.duration(end - start)}:1s] "
        f"@ {end:.3f})"
    )
    before = judged.prometheus.instant_value(q_before)
    during = judged.prometheus.instant_value(q_during)
    where = f"{app}" + (f" in {zone}" if zone else "")
    if not before:
        return judged.result(
            False,
            during,
            f"no {where} target was up just before the fault ({sel}): nothing to take down, "
            "or Prometheus does not scrape these pods",
            q_before,
        )
    return judged.result(
        during is not None and during <= max_up,
        during,
        f"{where}: {before:.0f} target(s) up before the fault, as few as {fmt_number(during)} "
        f"during it (need <= {max_up})",
        q_during,
        up_before=before,
    )
