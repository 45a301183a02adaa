"""Chaos Toolkit control: keep the journal in the run directory.

`chaos run experiments/x.json` writes `./journal.json` wherever it was started; the report
builder reads `<run_dir>/journal.json`, next to the `windows.json` and Locust files the
activities wrote under `helius_run_dir`. This control writes the journal there when the
experiment ends (`after_experiment_control`), so a standalone run can be reported:

    chaos run experiments/mlflow-outage.json
    chaoshelius report build reports/runs/latest

Declared in each experiment:

    "controls": [{"name": "helius-journal",
                  "provider": {"type": "python", "module": "chaoshelius.controls.journal"}}]

At the start of the experiment it removes the journal and the safeguard record an earlier run
left in the same directory, so the report never reads a stale one.
"""

from __future__ import annotations

import json
import logging
from enum import Enum
from pathlib import Path
from typing import Any

from chaoslib.types import Configuration, Experiment, Journal, Secrets

from chaoshelius.config import HarnessConfig

__all__ = ["JOURNAL_FILE", "after_experiment_control", "before_experiment_control"]

JOURNAL_FILE = "journal.json"
_STALE = (JOURNAL_FILE, "safeguard.json")
logger = logging.getLogger("chaostoolkit")


def before_experiment_control(
    context: Experiment,
    configuration: Configuration = None,
    secrets: Secrets = None,
    **kwargs: Any,
) -> None:
    """Create the run directory and drop what an earlier run left there."""
    run_dir = HarnessConfig.from_chaos(configuration).helius_run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in _STALE:
        (run_dir / name).unlink(missing_ok=True)


def after_experiment_control(
    context: Experiment,
    state: Journal,
    configuration: Configuration = None,
    secrets: Secrets = None,
    **kwargs: Any,
) -> None:
    """Write the finished journal to `<helius_run_dir>/journal.json`."""
    run_dir = HarnessConfig.from_chaos(configuration).helius_run_dir
    path = write_journal(run_dir, state)
    logger.info(f"Journal copied to {path} (chaoshelius report build {run_dir})")


def write_journal(run_dir: Path, journal: Any) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / JOURNAL_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(journal, indent=2, default=_jsonable), encoding="utf-8")
    tmp.replace(path)
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, Enum):  # e.g. the experiment's `dry` (chaoslib.types.Dry)
        return value.value
    return str(value)
