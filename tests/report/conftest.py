"""Shared fixtures: copies of the run directories recorded from real `chaos run`s."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from report_fixtures import RUNS


@pytest.fixture
def run_copy(tmp_path: Path) -> Callable[..., Path]:
    """Copy a recorded run into `tmp_path/reports/runs/<run_id>` and return that directory."""

    def copy(name: str, run_id: str | None = None) -> Path:
        target = tmp_path / "reports" / "runs" / (run_id or name)
        shutil.copytree(RUNS / name, target)
        return target

    return copy
