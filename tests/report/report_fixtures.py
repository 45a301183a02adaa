"""Helpers for the report tests: where the recorded runs are, and how to read them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RUNS = Path(__file__).parent / "fixtures" / "runs"


def load_journal(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RUNS / name / "journal.json").read_text())
    return data
