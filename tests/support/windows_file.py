"""Read a run's windows.json (imported by the tests, never from a conftest)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_windows(configuration: dict[str, Any]) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(
        (Path(configuration["helius_run_dir"]) / "windows.json").read_text()
    )
    return data
