"""Paths of the manifests and the helpers that render them (imported by tests and conftest)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
OVERLAYS = ("kind", "aws")
TARGETS = {"base": MANIFESTS / "base"} | {o: MANIFESTS / "overlays" / o for o in OVERLAYS}


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH; the manifest tests need it (CI installs it)")
    return path


def render(target: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize <target>` as a list of objects."""
    kubectl = require_tool("kubectl")
    done = subprocess.run(
        [kubectl, "kustomize", str(target)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {target} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]
