"""The window-probe decorator and the judge-every-probe control, with the real `chaos` CLI.

No target is needed: the probes here are plain functions of the standard library, so what is
tested is only how Chaos Toolkit binds, runs and records them.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import InvalidActivity
from chaoslib.provider.python import validate_python_activity

from chaoshelius import windows
from chaoshelius.slo import probes
from chaoshelius.slo.verdict import Judged, window_probe


def _activity(func: str, **arguments: Any) -> dict[str, Any]:
    return {
        "type": "probe",
        "name": func,
        "provider": {
            "type": "python",
            "module": "chaoshelius.slo.probes",
            "func": func,
            "arguments": arguments,
        },
    }


def test_chaos_toolkit_binds_experiment_arguments_to_the_public_signature() -> None:
    """The decorated probe's first parameter (the Judged window) is hidden from Chaos Toolkit:
    a real argument validates, a typo or the hidden parameter is refused."""
    params = list(inspect.signature(probes.fallback_engaged_within).parameters)
    assert params[0] == "seconds" and "judged" not in params
    validate_python_activity(_activity("fallback_engaged_within", seconds=5, kind="scale"))
    for bad in ({"secondz": 5}, {"seconds": 5, "judged": None}):
        with pytest.raises(InvalidActivity):
            validate_python_activity(_activity("fallback_engaged_within", **bad))


def test_a_window_probe_is_vacuous_before_and_fails_without_a_window_after(tmp_path: Path) -> None:
    calls: list[Judged] = []

    @window_probe()
    def probe(
        judged: Judged,
        limit: float = 1.0,
        window_id: str | None = None,
        kind: str | None = None,
        target: str | None = None,
        configuration: dict[str, Any] | None = None,
        secrets: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        calls.append(judged)
        return judged.result(True, limit, "judged")

    before = probe(limit=2.0, kind="scale")
    assert before["ok"] and before["vacuous"] and before["threshold"] == {"limit": 2.0}
    windows.mark_fault_phase()
    missing = probe(kind="scale")
    assert not missing["ok"] and "no fault window (kind=scale)" in missing["description"]
    assert calls == []
    window = windows.open_window(tmp_path, "scale", "mlflow", started_at=100.0)
    judged = probe(limit=3.0, kind="scale", configuration={"helius_run_dir": str(tmp_path)})
    assert judged["ok"] and judged["window"]["id"] == window.id
    assert calls[0].threshold == {"limit": 3.0} and calls[0].start == 100.0


def _experiment(flag: Path) -> dict[str, Any]:
    def exists(name: str, path: Path, expect: bool) -> dict[str, Any]:
        return {
            "type": "probe",
            "name": name,
            "provider": {
                "type": "python",
                "module": "os.path",
                "func": "exists",
                "arguments": {"path": str(path)},
            },
            "tolerance": expect,
        }

    return {
        "title": "two checks fail after the method",
        "description": "judge-every-probe records both",
        "controls": [
            {
                "name": "judge-every-probe",
                "provider": {"type": "python", "module": "chaoshelius.slo.judge_all"},
            }
        ],
        "steady-state-hypothesis": {
            "title": "no flag yet",
            "probes": [
                exists("first-check", flag, False),
                exists("second-check", flag, False),
                exists("third-check", flag.parent, True),
            ],
        },
        "method": [
            {
                "type": "action",
                "name": "enter-the-fault-phase",
                "provider": {
                    "type": "python",
                    "module": "chaoshelius.windows",
                    "func": "mark_fault_phase",
                },
            },
            {
                "type": "action",
                "name": "raise-the-flag",
                "provider": {"type": "process", "path": "touch", "arguments": [str(flag)]},
            },
        ],
    }


def test_judge_all_records_every_failing_probe_after_the_method(tmp_path: Path) -> None:
    """Chaos Toolkit stops at `first-check`; the control judges `second-check` (fails too) and
    `third-check` (holds) for the record. The run still deviates (exit 1)."""
    experiment = tmp_path / "x.json"
    experiment.write_text(json.dumps(_experiment(tmp_path / "flag")))
    journal = tmp_path / "journal.json"
    chaos = Path(sys.executable).with_name("chaos")
    done = subprocess.run(
        [str(chaos), "--no-log-file", "run", "--journal-path", str(journal), str(experiment)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    after = json.loads(journal.read_text())["steady_states"]["after"]
    results = {r["activity"]["name"]: r["tolerance_met"] for r in after["probes"]}
    assert results == {"first-check": False, "second-check": False, "third-check": True}
    extra = [r["activity"]["name"] for r in after["probes"] if r.get("judged_after_deviation")]
    assert extra == ["second-check", "third-check"]
    assert after["steady_state_met"] is False
    before = json.loads(journal.read_text())["steady_states"]["before"]
    assert [r["tolerance_met"] for r in before["probes"]] == [True, True, True]
