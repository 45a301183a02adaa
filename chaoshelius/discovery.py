"""`chaos discover --no-install chaoshelius`: the harness extension's activities.

Chaos Toolkit finds an extension by its *distribution* name and then imports the top-level
package that distribution ships (chaoslib.discovery.package): the distribution is named
`chaoshelius`, like its import name, so the one name works for both.

The activity list is built from the fault-domain packages by a loop: every
`chaoshelius.<domain>.actions` module's `__all__` are actions, every `probes` module's are
probes. Adding a domain means adding its name to DOMAINS, nothing else.

Argument types: chaoslib reads `inspect.signature`, which under postponed annotations
(`from __future__ import annotations`) holds strings, so every type would read `object`. The
types are resolved here with `typing.get_type_hints`, and `X | None` is reported as `X`.
"""

from __future__ import annotations

import importlib
import importlib.util
import types
import typing
from collections.abc import Callable
from typing import Any

from chaoslib.discovery.discover import (
    discover_actions,
    discover_probes,
    initialize_discovery_result,
    portable_type_name,
)
from chaoslib.types import DiscoveredActivities, Discovery

__all__ = ["DISTRIBUTION", "DOMAINS", "discover", "load_exported_activities"]

DOMAINS = ("pods", "network", "zones", "load", "model", "slo")
DISTRIBUTION = "chaoshelius"  # pyproject's [project] name: `chaos discover chaoshelius`


def discover(discover_system: bool = True) -> Discovery:
    """Discovery payload for `chaos discover`: the harness's activities (no system scan)."""
    from chaoshelius import __version__

    discovery: Discovery = initialize_discovery_result(DISTRIBUTION, __version__, "helius")
    discovery["activities"].extend(load_exported_activities())
    return discovery


def load_exported_activities() -> list[DiscoveredActivities]:
    """Actions and probes of every fault domain, from their modules' `__all__`, with their
    argument and return types resolved."""
    activities: list[DiscoveredActivities] = []
    for domain in DOMAINS:
        for module, discover_in in (("actions", discover_actions), ("probes", discover_probes)):
            name = f"chaoshelius.{domain}.{module}"
            if importlib.util.find_spec(name) is None:
                continue
            found = discover_in(name)
            for activity in found:
                _resolve_types(activity)
            activities.extend(found)
    return activities


def portable_type(hint: Any) -> str:
    """chaoslib's portable type name, reading through `X | None` and `Optional[X]`."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        kept = [a for a in typing.get_args(hint) if a is not type(None)]
        return str(portable_type_name(kept[0])) if len(kept) == 1 else "object"
    return str(portable_type_name(hint))


def _resolve_types(activity: Any) -> None:
    func: Callable[..., Any] = getattr(importlib.import_module(activity["mod"]), activity["name"])
    hints = typing.get_type_hints(func)
    for arg in activity.get("arguments", []):
        if arg["name"] in hints:
            arg["type"] = portable_type(hints[arg["name"]])
    if "return" in hints:
        activity["return_type"] = portable_type(hints["return"])
