"""The thresholds an experiment applies, in words, rendered from its own steps.

An experiment's description once said "TTL 90 s" where the fault's TTL was 120 s, and "2x +
10 ms" where its latency probe allowed 3x + 50 ms: numbers typed twice drift. Here every
number a description states is read from the value the step is given (a timing key's local
default from `TIMING`, named; a probe's argument, or the probe function's own default when the
catalogue does not write it), so a changed threshold changes the description with it.
tests/experiments/test_catalogue.py checks each description states what its steps apply.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from typing import Any

from chaoshelius.catalogue.steps import CatalogueError, Json, calls
from chaoshelius.catalogue.timing import SETTINGS, TIMING
from chaoshelius.load import actions as load
from chaoshelius.topology import FaultKind

__all__ = ["LOCAL_DEFAULT", "applied", "seconds", "setting", "thresholds"]

_PLACEHOLDER = re.compile(r"^\$\{(\w+)\}$")
LOCAL_DEFAULT = ", local default"
# how the thresholds sentence says where its `${key}` values come from
_PREAMBLE = (
    "Thresholds applied (a key in parentheses is a configuration key and the number its local "
    "default; experiments/profiles/cluster.json sets a cluster's): "
)


def _keyed(value: Any, unit: str, table: dict[str, int], named: str, note: str) -> str:
    """'<default> <unit> (<key><note>)' for a `${key}` value of `table`, '<value> <unit>' for a
    number; a key not in `table` fails the generation."""
    match = _PLACEHOLDER.match(value) if isinstance(value, str) else None
    if match is None:
        return f"{value:g} {unit}"
    key = match.group(1)
    if key not in table:
        raise CatalogueError(f"{key!r} is not a {named}")
    return f"{table[key]:g} {unit} ({key}{note})"


def seconds(value: Any, note: str = LOCAL_DEFAULT) -> str:
    """'40 s (helius_outage_hold_seconds, local default)' for a `${key}` timing value (its
    local default, with the key named), '40 s' for a number."""
    return _keyed(value, "s", TIMING, "timing key (TIMING)", note)


def setting(value: Any, unit: str) -> str:
    """'300 ms (helius_slo_p99_ms, its default)' for a `${key}` setting (its default, with the
    key named), '300 ms' for a number."""
    return _keyed(value, unit, SETTINGS, "setting key (SETTINGS)", ", its default")


def _function(step: Json) -> Callable[..., Any]:
    provider = step["provider"]
    func: Callable[..., Any] = getattr(
        importlib.import_module(provider["module"]), provider["func"]
    )
    return func


def applied(step: Json) -> dict[str, Any]:
    """A step's arguments as they apply: the ones written, and the function's own defaults for
    the others (a `${key}` stays as it is: `seconds` renders it)."""
    bound = inspect.signature(_function(step)).bind_partial(**step["provider"]["arguments"])
    bound.apply_defaults()
    return dict(bound.arguments)


def _pct(ratio: float) -> str:
    return f"{ratio * 100:g} %"


def _ms(value: float) -> str:
    return f"{value * 1000:g} ms"


def _success(a: Json) -> str:
    return (
        f"success >= {_pct(a['min_ratio'])} of requests, "
        f"no {seconds(a['worst_window_seconds'], '')} window below {_pct(a['min_worst_ratio'])}, "
        f"at least {a['min_requests']} requests, "
        f"throughput >= {_pct(a['min_throughput_ratio'])} of the "
        f"{seconds(a['baseline_seconds'], '')} before the fault"
    )


def _latency(a: Json) -> str:
    relative = (
        f"p99 <= {a['max_ratio']:g}x the p99 before + {_ms(a['noise_seconds'])} and "
        f"p50 <= {a['p50_max_ratio']:g}x the p50 before + {_ms(a['p50_noise_seconds'])} "
        f"(before: the {seconds(a['baseline_seconds'], '')} before the fault)"
    )
    ceilings = [
        f"{name} <= {setting(a[key], 'ms')}"
        for name, key in (("p99", "slo_p99_ms"), ("p50", "slo_p50_ms"))
        if a.get(key) is not None
    ]
    return relative + (f", and the SLO {' and '.join(ceilings)}" if ceilings else "")


def _after(a: Json) -> str:
    app = a.get("after_app_back")
    return f"of {app}'s return" if app else "of the fault's end"


def _recovered(a: Json) -> str:
    since = "the kill" if a["kind"] == FaultKind.POD_KILL.value else "the fault's end"
    where = " in every zone" if a["per_zone"] else ""
    return f"{a['app']} back and Ready{where} within {seconds(a['seconds'], '')} of {since}"


def _down(a: Json) -> str:
    most = "no" if a["max_up"] == 0 else f"at most {a['max_up']}"
    return f"{most} {a['app']} target up{' in the zone' if a.get('zone') else ''}"


# probe function -> what its arguments promise; probes without a threshold are left out
_PROBES: dict[str, Callable[[Json], str]] = {
    "client_success_ratio": _success,
    "latency_p99_ratio": _latency,
    "fallback_engaged_within": lambda a: (
        f"every pod in fallback within {seconds(a['seconds'], '')} of the fault's start "
        f"(of its own start for a new pod), held until the dependency is back"
    ),
    "fallback_cleared_within": lambda a: (
        f"every pod out of fallback within {seconds(a['seconds'], '')} {_after(a)}"
    ),
    "fallback_never_engaged": lambda a: (
        f"no pod in fallback from the fault's start to {seconds(a['grace_seconds'], '')} "
        "after its end"
    ),
    "alert_fired": lambda a: (
        f"{a['alertname']} firing within {seconds(a['within_seconds'], '')} of the fault's start"
    ),
    "replicas_recovered_within": _recovered,
    "models_converged_within": lambda a: (
        f"every pod on the registry's champion within {seconds(a['seconds'], '')} of the "
        "fault's end"
    ),
    "promoted_model_served_within": lambda a: (
        f"every pod that answered served the promoted model (version and artifact digest, as "
        f"the clients got it) within {seconds(a['seconds'], '')} of the alias moving (the "
        "fault's end when the promotion was during it)"
    ),
    "no_pod_downgraded": lambda a: (
        f"no pod answered from the baseline after a registry or cache model (at most "
        f"{a['max_baseline_answers']} answers, per pod, from the clients' counter)"
    ),
    "replacement_served_cache": lambda a: (
        f"the replacement answered only from its on-disk cache with the digest served before "
        f"the kill, at least {a['min_answers']} answer(s), until {a['during_target']} was back "
        "(on a cluster, whose cache is an emptyDir: from cache or the baseline)"
    ),
    "targets_went_down": _down,
    "counter_grew": lambda a: f"{a['selector']} grew by >= {a['min_increase']:g}",
    "refresh_fresh_after_recovery": lambda a: (
        f"every pod's last successful registry refresh at most "
        f"{seconds(a['max_age_seconds'], '')} old, from that long after "
        f"{a['after_app_back'] + ' was back' if a.get('after_app_back') else 'the fault'} on"
    ),
    "memory_growth_within": lambda a: (
        f"every {a['app']} pod's resident memory grown by at most {a['max_growth_mib']:g} MiB "
        "from the first fault to the end"
    ),
    "pods_prediction_slo": lambda a: (
        f"on every recommender pod with >= {a['min_requests']} {a['route']} answers, errors <= "
        f"{_pct(a['max_error_ratio'])} and p99 <= {a['max_ratio']:g}x the fleet's p99 before + "
        f"{_ms(a['noise_seconds'])}"
    ),
}


def _load(a: Json) -> str:
    if a.get("capacity_fraction"):
        return f"load at {_pct(a['capacity_fraction'])} of the capacity measured at run time"
    if a.get("rate"):
        return f"load at {setting(a['rate'], 'requests/s')}"
    return f"load at {load.DEFAULT_RATE:g} requests/s (helius_load_rate, its default)"


def thresholds(checks: list[Json], method: list[Json]) -> str:
    """One sentence: the load, every fault's TTL, and what each judging probe of `checks`
    allows, from their arguments (`pods_ready` and the other 'now' checks are common)."""
    parts = []
    for step in method:
        a = applied(step)
        if calls(step, load.start_load):
            parts.append(_load(a))
        if "ttl_seconds" in a:
            ttl = seconds(a["ttl_seconds"], "")
            parts.append(f"{step['name']} reverts by itself after TTL {ttl}")
    for step in checks:
        render = _PROBES.get(step["provider"]["func"])
        if render is not None:
            parts.append(f"{step['name']}: {render(applied(step))}")
    return _PREAMBLE + "; ".join(parts) + "."
