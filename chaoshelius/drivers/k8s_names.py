"""Labels and annotations the kubernetes driver writes and the reaper reads (no heavy imports:
the reaper must start fast and run without chaosk8s), and the one place their values are
written and read, so the writer cannot produce what the reader rejects."""

from __future__ import annotations

import math
import re
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

_WHOLE = re.compile(r"[0-9]{1,10}")


def expires_at_value(at: float) -> str:
    """The `expires-at` annotation for the instant `at` (Unix seconds, whole).

    ValueError unless `at` is finite and positive: an expiry of `nan` or `inf` would never
    come (the reaper treats one as malformed and reverts at once, but the writer must not
    produce it), a negative one is no instant at all.
    """
    if not isinstance(at, int | float) or isinstance(at, bool) or not math.isfinite(at) or at <= 0:
        raise ValueError(f"an expiry must be a finite, positive Unix time in seconds, not {at!r}")
    return f"{at:.0f}"


def parse_expires_at(value: object) -> float | None:
    """The instant an `expires-at` annotation names, or None when it is malformed (missing,
    not a number, `nan`, `inf`, zero or negative): never "never expires"."""
    try:
        at = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return at if math.isfinite(at) and at > 0 else None


def parse_replicas(value: object) -> int | None:
    """The replicas an `original-replicas` annotation names (a whole number >= 0), or None."""
    if not isinstance(value, str) or not _WHOLE.fullmatch(value.strip()):
        return None
    return int(value.strip())
