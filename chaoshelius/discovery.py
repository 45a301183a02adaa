"""`chaos discover chaostoolkit-helius`-style discovery for the harness extension.

The activity list is built from the fault-domain packages by a loop: every
`chaoshelius.<domain>.actions` module's `__all__` are actions, every `probes` module's are
probes. Adding a domain means adding its name to DOMAINS, nothing else.
"""

from __future__ import annotations

import importlib.util

from chaoslib.discovery.discover import (
    discover_actions,
    discover_probes,
    initialize_discovery_result,
)
from chaoslib.types import DiscoveredActivities, Discovery

__all__ = ["DOMAINS", "discover", "load_exported_activities"]

DOMAINS = ("pods", "network", "zones", "load", "model", "slo")


def discover(discover_system: bool = True) -> Discovery:
    """Discovery payload for `chaos discover`: the harness's activities (no system scan)."""
    from chaoshelius import __version__

    discovery: Discovery = initialize_discovery_result("chaoshelius", __version__, "helius")
    discovery["activities"].extend(load_exported_activities())
    return discovery


def load_exported_activities() -> list[DiscoveredActivities]:
    """Actions and probes of every fault domain, from their modules' `__all__`."""
    activities: list[DiscoveredActivities] = []
    for domain in DOMAINS:
        for module, discover_in in (("actions", discover_actions), ("probes", discover_probes)):
            name = f"chaoshelius.{domain}.{module}"
            if importlib.util.find_spec(name) is None:
                continue
            activities.extend(discover_in(name))
    return activities
