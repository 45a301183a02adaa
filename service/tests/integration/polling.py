"""Polling with a deadline, for the integration tests (imported by them, never from a conftest)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> float:
    """Poll until true; return the seconds it took; fail the test naming `what`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)
    return time.monotonic() - started
