"""Fixtures for the manifest tests: rendered overlays and the tool binaries.

Missing tools fail loudly: CI installs kubectl and promtool (.ci/run), and a skipped manifest
test would hide a broken manifest. Paths and helpers live in k8s_paths.py (tests import them
from there, never from a conftest).
"""

from __future__ import annotations

from typing import Any

import pytest
from k8s_paths import TARGETS, render, require_tool


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Every target (base and overlays) rendered once per session."""
    return {name: render(path) for name, path in TARGETS.items()}


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool")
