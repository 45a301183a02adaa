"""The suite's conventions that need no stack: `chaos run` options passed through (checked
with a real `chaos run` of a tiny experiment), progress lines from the chaos log, one quiet
line per experiment when stdout is not a terminal, the summary line's units."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import chaoshelius.suite
from chaoshelius.cli import main
from chaoshelius.report.model import Kpis, RunSummary, Verdict
from chaoshelius.stack.config import StackConfig
from chaoshelius.suite import (
    PlannedRun,
    SuiteError,
    SuiteOptions,
    SuiteResult,
    chaos_argv,
    chaos_env,
    chaos_run_args,
    plan,
    progress_reporter,
    summary_line,
)

BIN = Path(sys.executable).parent
FIXTURE_LOG = Path(__file__).parent / "fixtures" / "mlflow-pod-kill.chaos.log"
EXPERIMENTS = Path(__file__).parents[2] / "experiments"

TINY = """
import pathlib

def say(text: str, who: str) -> dict:
    return {"ok": True, "value": 1, "threshold": {"min": 1}, "query": "", "description": "",
            "said": f"{text} {who}"}

def after_experiment_control(context, state, **kwargs) -> None:
    pathlib.Path("control-file-ran").write_text(state["status"])
"""


def _tiny(tmp: Path) -> Path:
    (tmp / "tinymod.py").write_text(TINY)
    experiment = {
        "version": "1.0.0",
        "title": "tiny",
        "description": "no stack",
        "configuration": {"greeting": "hi", "who": "nobody"},
        "steady-state-hypothesis": {"title": "says", "probes": [
            {"type": "probe", "name": "say",
             "provider": {"type": "python", "module": "tinymod", "func": "say",
                          "arguments": {"text": "${greeting}", "who": "${who}"}},
             "tolerance": {"type": "jsonpath", "path": "$.ok", "expect": True}}]},
        "method": [{"type": "action", "name": "act",
                    "provider": {"type": "python", "module": "tinymod", "func": "say",
                                 "arguments": {"text": "x", "who": "y"}}}],
    }  # fmt: skip
    path = tmp / "tiny.json"
    path.write_text(json.dumps(experiment))
    return path


def _run(tmp: Path, argv: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        argv,
        cwd=tmp,
        env={"PATH": str(BIN), "PYTHONPATH": str(tmp), "HOME": str(tmp)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    journal: dict[str, Any] = json.loads((tmp / "run" / "journal.json").read_text())
    return journal


def test_chaos_run_options_reach_a_real_chaos_run(tmp_path: Path) -> None:
    experiment = _tiny(tmp_path)
    (tmp_path / "run").mkdir()
    var_file = tmp_path / "vars.json"
    var_file.write_text(json.dumps({"configuration": {"greeting": "hello"}}))
    control_file = tmp_path / "controls.json"
    control_file.write_text(
        json.dumps({"tiny": {"provider": {"type": "python", "module": "tinymod"}}})
    )
    args = chaos_run_args(
        var=["who=world"],
        var_file=[var_file],
        control_file=[control_file],
        hypothesis_strategy="after-method-only",
    )
    chaos = str(BIN / "chaos")
    journal = _run(tmp_path, chaos_argv(chaos, tmp_path / "run", experiment, args))
    states = journal["steady_states"]
    assert states["before"] is None  # after-method-only
    assert states["after"]["probes"][0]["output"]["said"] == "hello world"  # var-file + var
    assert (tmp_path / "control-file-ran").read_text() == "completed"
    assert (tmp_path / "run" / "chaos.log").exists()

    dry = chaos_run_args(dry="activities")
    journal = _run(tmp_path, chaos_argv(chaos, tmp_path / "run", experiment, dry))
    assert journal["experiment"]["dry"] == "activities"


@pytest.mark.parametrize(
    "kwargs",
    [{"dry": "everything"}, {"hypothesis_strategy": "sometimes"}, {"var": ["no-equals"]}],
)
def test_chaos_run_args_refuses_what_chaos_run_would(kwargs: dict[str, Any]) -> None:
    with pytest.raises(SuiteError):
        chaos_run_args(**kwargs)


def test_progress_lines_follow_the_chaos_log_as_it_grows(tmp_path: Path) -> None:
    lines: list[str] = []
    log = tmp_path / "chaos.log"
    tick = progress_reporter(
        tmp_path, EXPERIMENTS / "mlflow-pod-kill.json", "[1/6] mlflow-pod-kill", lines.append
    )
    tick()  # no log yet: nothing, no error
    text = FIXTURE_LOG.read_text()
    cut = text.index("Action: kill-one-mlflow-pod") + 5  # mid-line: must wait for its end
    log.write_text(text[:cut])
    tick()
    assert lines[-1] == "[1/6] mlflow-pod-kill — baseline: load warming up (15s)"
    with log.open("a") as handle:
        handle.write(text[cut:])
    tick()
    phases = [line.split(" — ", 1)[1] for line in lines]
    assert phases == [
        "baseline: steady-state hypothesis before the method",
        "baseline: start-load",
        "baseline: load warming up (15s)",
        "fault: kill-one-mlflow-pod",
        "hold: fault active under load (15s)",
        "recovery: await-mlflow-replacement",
        "recovery: settling (5s)",
        "recovery: stop-load",
        "judging: steady-state hypothesis after the method",
        "rollback",
        "rollback: stop-load",
        "ended: completed",
    ]


def _captured_options(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[SuiteOptions, str]:
    seen: list[SuiteOptions] = []

    def fake_run_suite(runs: Any, options: SuiteOptions) -> SuiteResult:
        seen.append(options)
        return SuiteResult("s1")

    monkeypatch.setattr(chaoshelius.suite, "run_suite", fake_run_suite)
    result = CliRunner().invoke(
        main,
        ["suite", "run", "--experiments", str(EXPERIMENTS), "--only", "mlflow-pod-kill", *args],
    )
    assert result.exit_code == 0, result.output
    return seen[0], result.output


def test_suite_is_quiet_when_stdout_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    options, _ = _captured_options(monkeypatch)
    assert options.progress is False  # CliRunner's stdout is not a terminal
    assert options.safeguards is True and options.chaos_args == ()
    options, _ = _captured_options(monkeypatch, "--progress", "--no-safeguards")
    assert options.progress is True and options.safeguards is False


def test_suite_passes_chaos_run_options_through(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    var_file = tmp_path / "v.yaml"
    var_file.write_text("configuration:\n  greeting: hi\n")
    options, _ = _captured_options(
        monkeypatch,
        "--var", "target=kubernetes", "--var-file", str(var_file), "--control-file",
        str(var_file), "--dry", "probes", "--hypothesis-strategy", "continuously",
        "--hypothesis-frequency", "5",
    )  # fmt: skip
    assert options.chaos_args == (
        "--var", "target=kubernetes", "--var-file", str(var_file.resolve()),
        "--control-file", str(var_file.resolve()), "--dry", "probes",
        "--hypothesis-strategy", "continuously", "--hypothesis-frequency", "5",
    )  # fmt: skip


def test_summary_line_rounds_with_units() -> None:
    summary = RunSummary(
        run_id="r",
        experiment_key="mlflow-outage",
        experiment_title="t",
        verdict=Verdict.PASSED,
        reason="",
        status="completed",
        deviated=False,
        started_at=0.0,
        ended_at=57.83684802055359,
        duration_s=57.83684802055359,
        failing_probe=None,
        kpis=Kpis(
            availability_during_fault=0.99876,
            time_to_fallback_s=2.000244617462158,
            time_to_recover_s=24.27,
            worst_p99_s=0.0196,
            load_rps_during_fault=78.91,
        ),
        resilience_score=87.5,
    )
    line = summary_line(summary)
    for text in (
        "58 s",
        "score 88/100",
        "availability 99.87 %",
        "fallback 2.0 s",
        "recover 24.3 s",
        "worst p99 19.6 ms",
        "load 78.9 req/s",
    ):
        assert text in line, text
    assert "57.83" not in line and "2.0002" not in line


def test_negative_controls_run_without_safeguards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELIUS_SAFEGUARDS", "off")  # a caller's value must not leak in
    ports = {"control": 1, "prometheus": 2, "reco_service": 3, "mlflow_service": 5, "loadgen": 4}
    normal = PlannedRun(EXPERIMENTS / "mlflow-outage.json")
    negative = PlannedRun(normal.experiment, tmp_path / "fallback-disabled.yaml")
    on = SuiteOptions()
    assert "HELIUS_SAFEGUARDS" not in chaos_env(normal, tmp_path, ports, on)
    assert chaos_env(negative, tmp_path, ports, on)["HELIUS_SAFEGUARDS"] == "off"
    off = SuiteOptions(safeguards=False)
    assert chaos_env(normal, tmp_path, ports, off)["HELIUS_SAFEGUARDS"] == "off"
    assert chaos_env(normal, tmp_path, ports, on)["HELIUS_RUN_DIR"] == str(tmp_path.resolve())


def test_repeat_plans_each_run_n_times_in_a_row_with_distinct_run_dirs() -> None:
    """A false-alarm campaign (`--repeat 3`): each experiment three times in a row, each run in
    its own directory (the same suite id and key must not overwrite each other's journal)."""
    experiments = EXPERIMENTS
    runs = plan(experiments, ("reco-pod-kill", "az-drain"), repeat=3)
    assert [(r.key, r.repeat) for r in runs] == [
        ("reco-pod-kill", 1), ("reco-pod-kill", 2), ("reco-pod-kill", 3),
        ("az-drain", 1), ("az-drain", 2), ("az-drain", 3),
    ]  # fmt: skip
    assert len({r.run_id("s") for r in runs}) == 6
    assert plan(experiments, ("reco-pod-kill",))[0].run_id("s") == "s-reco-pod-kill"
    with pytest.raises(SuiteError, match="at least 1"):
        plan(experiments, ("reco-pod-kill",), repeat=0)


def test_every_negative_control_swaps_in_place_and_a_restart_would_go_last(
    tmp_path: Path,
) -> None:
    """A profile the running stack can swap in place (new recommender pods, MLflow's probes or
    the alert rules applied live) costs seconds; one that changes anything else (MLflow's
    placement, the refresh interval...) restarts everything: those would go last. Every shipped
    control swaps in place today, so the plan is in profile order."""
    from chaoshelius.suite.plan import _needs_restart

    runs = plan(EXPERIMENTS, negative=True)
    assert [r for r in runs if _needs_restart(r.profile)] == []
    stems = [r.profile.stem for r in runs if r.profile]
    assert stems == sorted(stems)
    assert {"mlflow-ready-after-120s", "degraded-alert-on-up"} <= set(stems)
    restart = tmp_path / "mlflow-two.yml"
    restart.write_text("name: mlflow-two\nmlflow: {replicas: 2}\n")
    assert _needs_restart(restart)
    assert not StackConfig().swappable_to(StackConfig.load(restart))


def test_control_runs_only_the_named_negative_controls() -> None:
    """`--control lying-pod` runs that control alone (a user checking one weakness, or a
    developer a new control); a misspelt name is one line naming the known ones."""
    runs = plan(EXPERIMENTS, negative=True, controls=("lying-pod", "slow-start"))
    assert sorted((r.key, r.profile.stem) for r in runs if r.profile) == [
        ("az-drain", "slow-start"), ("rds-path-cut", "lying-pod"), ("reco-pod-kill", "slow-start"),
    ]  # fmt: skip
    assert all(r.expected_probes for r in runs)
    with pytest.raises(SuiteError, match=r"unknown negative control\(s\) \['lyin-pod'\]"):
        plan(EXPERIMENTS, negative=True, controls=("lyin-pod",))
    with pytest.raises(SuiteError, match="add --negative"):
        plan(EXPERIMENTS, controls=("lying-pod",))
