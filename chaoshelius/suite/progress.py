"""Which phase a running experiment is in, read from its `chaos --log-file` as it grows.

Chaos Toolkit logs each step as it starts ("Steady state hypothesis: …", "Action: …",
"Pausing after activity for 15s...", "Let's rollback...", "Experiment ended with status: …").
The suite tails that log and names the phase, for lines like

    [2/6] mlflow-outage — fault: scale-mlflow-to-zero

Phases, in the order a harness experiment goes through them:

| phase | from the log |
|---|---|
| baseline | the hypothesis before the method; the load actions and their warm-up |
| fault | the first method action that is not a load action (`chaoshelius.load.actions`) |
| hold | the pause after the fault action |
| recovery | the method actions after the fault (restore, await, settle) and their pauses |
| judging | the steady-state hypothesis after the method |
| rollback | the rollbacks |
| ended | "Experiment ended with status: …" |
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LOAD_MODULE", "LogFollower", "PhaseTracker", "load_action_names"]

LOAD_MODULE = "chaoshelius.load.actions"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_MESSAGE = re.compile(r"^\[[^\]]*\]\s*\[[^\]]*\]\s*(?P<msg>.*)$")


def load_action_names(experiment_file: Path) -> frozenset[str]:
    """Names of the experiment's actions that run the load generator (not faults)."""
    try:
        experiment: Any = json.loads(experiment_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return frozenset()
    names: set[str] = set()
    for section in ("method", "rollbacks"):
        for activity in experiment.get(section) or ():
            provider = activity.get("provider") or {} if isinstance(activity, dict) else {}
            if isinstance(provider, dict) and provider.get("module") == LOAD_MODULE:
                names.add(str(activity.get("name")))
    return frozenset(names)


@dataclass
class PhaseTracker:
    """Turns Chaos Toolkit log messages into phase names; `feed` returns a new phase or None."""

    load_actions: frozenset[str] = frozenset()
    phase: str | None = None
    _hypotheses: int = 0
    _fault_seen: bool = False
    _in_method: bool = False
    _in_rollbacks: bool = False

    def feed(self, line: str) -> str | None:
        match = _MESSAGE.match(_ANSI.sub("", line).strip())
        if match is None or "DEBUG]" in line:
            return None
        new = self._phase_of(match.group("msg"))
        if new is None or new == self.phase:
            return None
        self.phase = new
        return new

    def _phase_of(self, msg: str) -> str | None:
        if msg.startswith("Steady state hypothesis:"):
            self._hypotheses += 1
            self._in_method = False
            if self._hypotheses == 1:
                return "baseline: steady-state hypothesis before the method"
            return "judging: steady-state hypothesis after the method"
        if msg.startswith("Playing your experiment's method"):
            self._in_method = True
            return None
        if msg.startswith("Let's rollback"):
            self._in_method, self._in_rollbacks = False, True
            return "rollback"
        if msg.startswith("Rollback: "):
            return f"rollback: {msg.removeprefix('Rollback: ')}"
        if msg.startswith("Experiment ended with status:"):
            return "ended: " + msg.split(":", 1)[1].strip()
        if "Safeguard" in msg and "tripped" in msg:
            return "aborted by a safeguard"
        if msg.startswith(("Action: ", "Probe: ")) and self._in_method:
            name = msg.split(": ", 1)[1]
            if name in self.load_actions and not self._fault_seen:
                return f"baseline: {name}"
            if msg.startswith("Action: ") and not self._fault_seen:
                self._fault_seen = True
                return f"fault: {name}"
            return f"recovery: {name}" if self._fault_seen else f"baseline: {name}"
        if msg.startswith("Pausing after activity for") and self._in_method:
            seconds = msg.removeprefix("Pausing after activity for").strip(" .")
            if not self._fault_seen:
                return f"baseline: load warming up ({seconds})"
            if self.phase and self.phase.startswith("fault"):
                return f"hold: fault active under load ({seconds})"
            return f"recovery: settling ({seconds})"
        return None


class LogFollower:
    """Reads the lines appended to a file since the last call (the file may not exist yet)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = ""

    def new_lines(self) -> Iterable[str]:
        try:
            with self.path.open("r", encoding="utf-8", errors="replace") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
                self._offset = handle.tell()
        except OSError:
            return []
        text = self._partial + chunk
        lines = text.split("\n")
        self._partial = lines.pop()  # an unfinished last line waits for its end
        return lines
