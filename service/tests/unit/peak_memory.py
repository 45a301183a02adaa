"""One way to measure what a block of code allocates, for the tests that bound the memory a
hostile artifact or request may cost (tracemalloc: Python allocations, numpy's included)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass
class Peak:
    bytes: int = 0


@contextmanager
def traced_peak() -> Iterator[Peak]:
    """The peak of traced allocations inside the block, above what was traced at its start."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    start, _ = tracemalloc.get_traced_memory()
    peak = Peak()
    try:
        yield peak
    finally:
        _, top = tracemalloc.get_traced_memory()
        peak.bytes = top - start
        if not was_tracing:
            tracemalloc.stop()
