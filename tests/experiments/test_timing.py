"""Timing per target: every duration an experiment uses resolves to a number on both targets.

The experiment files name their target-dependent durations as `${helius_*_seconds}` keys; the
local stack's values are their defaults, a cluster's come from `--var-file
experiments/profiles/cluster.json`. Chaos Toolkit's own configuration loading and
substitution (chaoslib) resolve them here exactly as `chaos run` does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from chaoslib import merge_vars, substitute
from chaoslib.configuration import load_configuration

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((ROOT / "experiments").glob("*.json"))
CLUSTER = ROOT / "experiments" / "profiles" / "cluster.json"
PLACEHOLDER = re.compile(r"\$\{(helius_\w+_seconds)\}")


def _activities(experiment: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        *experiment["steady-state-hypothesis"]["probes"],
        *experiment["method"],
        *experiment.get("rollbacks", []),
    ]


def _resolved(path: Path, var_files: list[str]) -> list[dict[str, Any]]:
    experiment = json.loads(path.read_text())
    config_vars, _ = merge_vars({}, var_files)
    configuration = load_configuration(experiment["configuration"], config_vars)
    return [
        {
            "name": a["name"],
            "arguments": substitute(a["provider"].get("arguments", {}), configuration, None),
            "pauses": substitute(a.get("pauses", {}), configuration, None),
        }
        for a in _activities(experiment)
    ]


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
@pytest.mark.parametrize("target", ["local", "cluster"])
def test_every_timing_placeholder_resolves_to_a_number(path: Path, target: str) -> None:
    used = set(PLACEHOLDER.findall(path.read_text()))
    assert used, f"{path.name} names no timing key: its durations would not follow the target"
    declared = json.loads(path.read_text())["configuration"]
    assert used <= set(declared), used - set(declared)
    cluster = json.loads(CLUSTER.read_text())["configuration"]
    assert used <= set(cluster), f"cluster profile lacks {used - set(cluster)}"
    for activity in _resolved(path, [str(CLUSTER)] if target == "cluster" else []):
        for value in [*activity["arguments"].values(), *activity["pauses"].values()]:
            assert not (isinstance(value, str) and "${" in value), (activity["name"], value)
        for key, value in activity["pauses"].items():
            assert isinstance(value, int | float) and value > 0, (activity["name"], key, value)


def test_the_cluster_profile_lengthens_what_the_local_stack_keeps_short() -> None:
    """The same experiment, both targets: the cluster's holds, windows and deadlines are the
    profile's, the local stack's are the defaults (measured on the local stack)."""
    path = ROOT / "experiments" / "mlflow-outage.json"
    local = {a["name"]: a for a in _resolved(path, [])}
    cluster = {a["name"]: a for a in _resolved(path, [str(CLUSTER)])}
    assert local["scale-mlflow-to-zero"]["pauses"]["after"] == 40
    assert cluster["scale-mlflow-to-zero"]["pauses"]["after"] == 60
    assert local["fallback-engaged-on-every-pod"]["arguments"]["seconds"] == 20
    assert cluster["fallback-engaged-on-every-pod"]["arguments"]["seconds"] == 30
    assert cluster["predictions-continued"]["arguments"]["worst_window_seconds"] == 20
    assert cluster["start-load"]["pauses"]["after"] == 60
