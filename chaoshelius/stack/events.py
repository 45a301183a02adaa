"""The stack's event log: what happened (boot steps, faults, kills), newest last.

Kept in memory (the last `MAX_EVENTS`, served by `GET /events`) and logged, one JSON line each,
to the supervisor's log.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from typing import Any

log = logging.getLogger("chaoshelius.stack")

MAX_EVENTS = 2000


class EventLog:
    def __init__(self, maxlen: int = MAX_EVENTS) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=maxlen)

    def record(self, what: str, **details: Any) -> None:
        entry = {"time": time.time(), "event": what, **details}
        self._events.append(entry)
        log.info("%s", json.dumps(entry))

    def entries(self) -> list[dict[str, Any]]:
        return list(self._events)
