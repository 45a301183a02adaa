"""`chaos discover --no-install chaoshelius`: found under the import name, with real types."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from chaoshelius.discovery import portable_type

CHAOS = str(Path(sys.executable).with_name("chaos"))


def test_chaos_discover_finds_the_extension_under_its_import_name(tmp_path: Path) -> None:
    out = tmp_path / "discovery.json"
    done = subprocess.run(
        [CHAOS, "discover", "--no-install", "--no-system-info", "chaoshelius", "--discovery-path",
         str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    discovery = json.loads(out.read_text())
    activities: dict[str, Any] = {a["name"]: a for a in discovery["activities"]}
    assert discovery["extension"]["name"] == "chaoshelius"
    assert {"kill_pods", "client_success_ratio", "cut_path"} <= set(activities)

    args = {a["name"]: a for a in activities["client_success_ratio"]["arguments"]}
    # real types, not `object` (postponed annotations are strings to inspect.signature)
    assert args["min_ratio"]["type"] == "number"
    assert args["min_requests"]["type"] == "integer"
    assert args["request_name"]["type"] == "string"  # `str | None` reads as its type
    assert args["configuration"]["type"] == "mapping"
    assert activities["client_success_ratio"]["return_type"] == "mapping"
    types = {a.get("type") for act in activities.values() for a in act["arguments"]}
    assert "object" not in types, "an argument type could not be resolved"


def test_portable_type_reads_through_optional() -> None:
    assert portable_type(int | None) == "integer"
    assert portable_type(float) == "number"
    assert portable_type(list[str] | None) == "list"
    assert portable_type(int | str) == "object"  # a real union stays undecided
