"""Waiting for a condition: the one poll loop of the tests."""

from __future__ import annotations

import time
from collections.abc import Callable


class Timeout(AssertionError):
    """A condition was not met before its deadline (the message says which)."""


def wait_for[T](predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll until `predicate()` is truthy; return its value or fail naming `what`."""
    deadline = time.monotonic() + timeout
    last: T = predicate()
    while not last:
        if time.monotonic() > deadline:
            raise Timeout(f"{what}: not true within {timeout:g} s (last value {last!r})")
        time.sleep(interval)
        last = predicate()
    return last
