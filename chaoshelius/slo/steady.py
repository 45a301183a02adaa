"""Are the recommenders out of fallback now? Asked one way, as Prometheus sees it.

The steady gate (chaoshelius.controls.steady_gate), the suite's pre-run wait (local stack and
cluster) and the stack's boot ask it through `fallback_reason`; an experiment asks it with
`NO_FALLBACK_NOW_PROBE`, chaostoolkit-prometheus's own instant query (its raw API answer,
under our HTTP deadline: `chaoshelius.slo.probes.query`) judged by a chaoslib tolerance, the
way Chaos Toolkit users write such a check:

```json
{
  "type": "probe",
  "name": "recommender-not-in-fallback-now",
  "tolerance": {"type": "jsonpath", "path": "$.data.result[0].value[1]", "expect": "0"},
  "provider": {
    "type": "python",
    "module": "chaoshelius.slo.probes",
    "func": "query",
    "arguments": {"query": "max(reco_engine_in_fallback_mode)"}
  }
}
```

Prometheus answers an instant vector's value as a string ("0" or "1"), so the tolerance
expects the string "0". No series (nothing scraped) raises in `query`: no data is a failure.
The window probes (chaoshelius.slo.fallback) stay ours: a `max()` now says nothing about when
each pod engaged or cleared during a fault.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from chaoshelius.topology import FALLBACK_GAUGE

if TYPE_CHECKING:
    from chaoshelius.promapi import PrometheusAPI

__all__ = [
    "IN_FALLBACK_QUERY",
    "NO_FALLBACK_NOW_PROBE",
    "NO_FALLBACK_NOW_QUERY",
    "NO_FALLBACK_NOW_TOLERANCE",
    "OUT_OF_FALLBACK_QUERY",
    "fallback_reason",
    "out_of_fallback_query",
]

# how many recommender pods report fallback (1) / report being out of it (0)
IN_FALLBACK_QUERY = f"count({FALLBACK_GAUGE} == 1)"
OUT_OF_FALLBACK_QUERY = f"count({FALLBACK_GAUGE} == 0)"
# 0 when no pod reports fallback, 1 when one does
NO_FALLBACK_NOW_QUERY = f"max({FALLBACK_GAUGE})"
NO_FALLBACK_NOW_TOLERANCE: dict[str, Any] = {
    "type": "jsonpath",
    "path": "$.data.result[0].value[1]",
    "expect": "0",
}
NO_FALLBACK_NOW_PROBE: dict[str, Any] = {
    "type": "probe",
    "name": "recommender-not-in-fallback-now",
    "tolerance": NO_FALLBACK_NOW_TOLERANCE,
    "provider": {
        "type": "python",
        "module": "chaoshelius.slo.probes",
        "func": "query",
        "arguments": {"query": NO_FALLBACK_NOW_QUERY},
    },
}


_POD_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")  # a Kubernetes-style pod name


def out_of_fallback_query(pods: Collection[str] = ()) -> str:
    """How many recommender pods report being out of fallback: of `pods` only, when named (a
    pod just replaced is not confirmed by its predecessor's last samples)."""
    if not pods or not all(_POD_NAME.match(p) for p in pods):
        return OUT_OF_FALLBACK_QUERY
    return f'count({FALLBACK_GAUGE}{{pod=~"{"|".join(sorted(pods))}"}} == 0)'


def fallback_reason(
    prom: PrometheusAPI, recommenders: int | None = None, pods: Collection[str] = ()
) -> str | None:
    """Why the recommenders are not out of fallback as Prometheus sees them now, or None.

    Without `recommenders`: not out when any pod reports fallback (a pod Prometheus does not
    scrape raises nothing). With `recommenders` (how many run): not out until that many pods
    report 0 (a pod not scraped yet is not confirmed); with `pods` (the names of those that run
    now), only their own series count: right after the recommenders are replaced, the old pods'
    last samples are still fresh for a scrape or two while the new ones are not scraped yet, and
    a count over all pods would confirm pods that are gone. Raises PromAPIError as `prom` does.
    """
    if recommenders is None:
        in_fallback = prom.instant_value(IN_FALLBACK_QUERY) or 0
        return f"{in_fallback:.0f} recommender(s) reporting fallback" if in_fallback else None
    confirmed = prom.instant_value(out_of_fallback_query(pods)) or 0
    if confirmed < recommenders:
        return f"{confirmed:.0f} of {recommenders} recommenders seen out of fallback by Prometheus"
    return None
