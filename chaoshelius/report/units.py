"""Numbers as a person reads them: rounded, with one unit per kind of quantity.

Values are stored as measured (ratios 0..1, seconds); these functions only format. The units:

| unit    | stored as | shown as            |
|---------|-----------|---------------------|
| `%`     | ratio 0..1 | `99.87 %`, `99 %` (100 % only when nothing failed) |
| `s`     | seconds   | `24.3 s`            |
| `ms`    | seconds   | `19.6 ms`, `123 ms` |
| `req/s` | per second | `78.9 req/s`       |
| `x`     | ratio     | `×1.35`             |
| ``      | count     | `2,052`             |
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["describe_limits", "format_quantity", "format_seconds"]


def format_quantity(value: float | None, unit: str, *, with_unit: bool = True) -> str:
    """`value` rounded for reading, in `unit` (see the table); "—" when there is none."""
    if value is None or not math.isfinite(value):
        return "—"
    suffix = f" {unit}" if with_unit and unit and unit != "x" else ""
    if unit == "%":
        pct = value * 100
        floored = f"{math.floor(pct * 100) / 100:.2f}".rstrip("0").rstrip(".")
        text = "100" if pct >= 100 else floored
        return text + suffix
    if unit == "s":
        return f"{value:.1f}{suffix}"
    if unit == "ms":
        ms = value * 1000
        return (f"{ms:.1f}" if ms < 100 else f"{ms:.0f}") + suffix
    if unit == "req/s":
        return f"{value:.1f}{suffix}"
    if unit == "x":
        return f"×{value:.2f}" if with_unit else f"{value:.2f}"
    return f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:.3g}"


def format_seconds(value: float | None) -> str:
    """A duration: `57.8 s`, `740 ms` below a second, `2.5 min` from two minutes."""
    if value is None or not math.isfinite(value):
        return "—"
    if abs(value) < 1:
        return format_quantity(value, "ms")
    if abs(value) >= 120:
        return f"{value / 60:.1f} min"
    return f"{value:.1f} s"


# an SLO probe's limits (chaoshelius.slo.probes' `threshold` keys) in words
_LIMIT_TEXT: dict[str, str] = {
    "min_ratio": "success ≥ {pct}",
    "min_requests": "≥ {n} requests",
    "min_throughput_ratio": "throughput ≥ {pct} of before",
    "max_ratio": "≤ ×{n} of before",
    "floor_seconds": "or ≤ {ms}",
    "seconds": "≤ {s}",
    "within_seconds": "within {s}",
    "after_app_back": "clock from {v} back up",
    "max_up": "≤ {n} up",
    "max": "≤ {n}",
    "min": "≥ {n}",
    "min_increase": "increase ≥ {n}",
    "replicas": "{n} replicas",
    "min_ready": "≥ {n} ready",
}


def describe_limits(limits: Mapping[str, Any]) -> str:
    """A probe's dict of limits in words with units, e.g. `success ≥ 99 %, ≥ 20 requests`."""
    parts: list[str] = []
    for key, value in limits.items():
        if value is None:
            continue
        template = _LIMIT_TEXT.get(key)
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if template is None or (key != "after_app_back" and not numeric):
            parts.append(f"{key} = {value}")
            continue
        number = float(value) if numeric else 0.0
        parts.append(
            template.format(
                pct=format_quantity(number, "%"),
                n=f"{number:g}",
                ms=format_quantity(number, "ms"),
                s=format_quantity(number, "s"),
                v=value,
            )
        )
    return ", ".join(parts) or "—"
