"""Labels and annotations the kubernetes driver writes and the reaper reads (no heavy imports:
the reaper must start fast and run without chaosk8s)."""

from __future__ import annotations

from typing import Any, Final

# a fault object (NetworkPolicy, NetworkChaos) is labelled FAULT_LABEL=true
FAULT_LABEL: Final = "helius.chaos/fault"
# on a scaled Deployment: the replicas to restore
ANNOT_ORIGINAL: Final = "helius.chaos/original-replicas"
# on every fault: when the reaper reverts it (Unix seconds)
ANNOT_EXPIRES: Final = "helius.chaos/expires-at"
# on a node: this harness cordoned it (value: the fault id), so only it is uncordoned again
ANNOT_CORDONED: Final = "helius.chaos/cordoned"
# pods of the harness itself (load generator, reaper): never a drain's target
HARNESS_LABEL: Final = "helius.chaos/harness"
UNCORDON_PATCH: Final[dict[str, Any]] = {
    "metadata": {"annotations": {ANNOT_CORDONED: None, ANNOT_EXPIRES: None}},
    "spec": {"unschedulable": None},
}
