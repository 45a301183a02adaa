"""Which CPUs a stack may use (`chaoshelius stack up --cpus 0-1`).

Pinned, the stack's supervisor and everything it starts (PostgreSQL, MLflow, the recommenders,
Prometheus, HAProxy) run on those CPUs only, e.g. to keep it off the cores a build uses.
Measured (2026-12-07, two cores): under the suite's 250 requests/s one stack uses 0.7-1.2
cores, and a stack pinned to one of them read p99 455 ms before any fault, so the suite's
lanes are not pinned (docs/experiments.md, "Lanes").

Linux only (`os.sched_setaffinity`); elsewhere nothing is pinned.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from chaoshelius.stack.errors import StackError

__all__ = ["affinity_of", "available", "can_pin", "describe", "parse", "pin"]

MAX_CPU_TEXT = 200  # "0-3,8-11": a CPU list is short


def can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


def available() -> tuple[int, ...]:
    """The CPUs this process may run on, in order."""
    if not can_pin():
        return tuple(range(os.cpu_count() or 1))
    return tuple(sorted(os.sched_getaffinity(0)))


def parse(text: str) -> frozenset[int]:
    """`0,2` or `0-3,8` as a CPU set; a StackError naming what is wrong otherwise."""
    if len(text) > MAX_CPU_TEXT:
        raise StackError(f"--cpus: a CPU list of at most {MAX_CPU_TEXT} characters")
    cpus: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, _, last = part.partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise StackError(f"--cpus {text!r}: expected CPU numbers like 0,2 or 0-3") from None
        if low < 0 or high < low:
            raise StackError(f"--cpus {text!r}: {part!r} is not a CPU range")
        cpus.update(range(low, high + 1))
    if not cpus:
        raise StackError(f"--cpus {text!r}: no CPU named")
    unknown = sorted(cpus - set(available()))
    if unknown:
        raise StackError(f"--cpus {text!r}: CPU(s) {unknown} not available here {available()}")
    return frozenset(cpus)


def describe(cpus: Iterable[int]) -> str:
    """A CPU set the way `parse` reads it: `0-3,6`."""
    ranges: list[list[int]] = []
    for cpu in sorted(set(cpus)):
        if ranges and ranges[-1][1] == cpu - 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def pin(pid: int, cpus: frozenset[int]) -> None:
    """Run `pid` (0: the calling thread) on `cpus` only; what it starts from now on inherits
    it. A process that already ended is left alone."""
    if not can_pin():
        return
    try:
        os.sched_setaffinity(pid, cpus)
    except ProcessLookupError:
        return


def affinity_of(pid: int) -> frozenset[int] | None:
    """The CPUs `pid` may run on; None if it is gone or this is not Linux."""
    if not can_pin():
        return None
    try:
        return frozenset(os.sched_getaffinity(pid))
    except (ProcessLookupError, PermissionError):
        return None
