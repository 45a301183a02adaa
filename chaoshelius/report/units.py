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

__all__ = ["format_quantity", "format_seconds"]


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
