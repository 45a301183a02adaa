"""The experiment files, checked without any target: valid for Chaos Toolkit, safe to interrupt.

`ensure_experiment_is_valid` binds every python activity's arguments to the real function
signature, so a renamed argument or a typo in a module name fails here, not mid-run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from chaoslib import substitute
from chaoslib.configuration import load_configuration
from chaoslib.experiment import ensure_experiment_is_valid
from chaoslib.loader import load_experiment

from chaoshelius.negative import load_controls
from chaoshelius.negative.coverage import settings_used
from chaoshelius.suite import plan

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((ROOT / "experiments").glob("*.json"))
FAULT_ACTIONS = {  # injecting function -> the function that undoes it
    "kill_pods": None,  # a kill needs no undo: the ReplicaSet / supervisor replaces the pod
    "scale_app": "restore_scale",
    "cut_path": "restore_path",
    "drain_zone": "uncordon_zone",
    "start_load": "stop_load",
}


def _load(path: Path) -> dict[str, Any]:
    """The experiment as `chaos run` sees it on the local stack: its `${helius_*}` timing
    placeholders substituted with their defaults (tests/experiments/test_timing.py covers
    the cluster profile)."""
    data: dict[str, Any] = json.loads(path.read_text())
    configuration = load_configuration(data["configuration"], {})
    body = {k: v for k, v in data.items() if k != "configuration"}
    resolved: dict[str, Any] = substitute(body, configuration, None)
    return {**resolved, "configuration": data["configuration"]}


def _funcs(activities: list[dict[str, Any]]) -> list[str]:
    return [a["provider"].get("func", "") for a in activities]


def test_the_catalogue_is_complete() -> None:
    names = {p.stem for p in EXPERIMENTS}
    assert {
        "mlflow-pod-kill",
        "mlflow-outage",
        "rds-path-cut",
        "az-drain",
        "mlflow-latency",
        "reco-pod-kill",
        "reco-cold-start-during-outage",
        "model-promoted-during-partition",
    } <= names


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_is_valid_for_chaostoolkit(path: Path) -> None:
    experiment = load_experiment(str(path))
    ensure_experiment_is_valid(experiment)  # raises InvalidExperiment on any problem


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_rollbacks_always_play_and_undo_every_fault(path: Path) -> None:
    experiment = _load(path)
    assert experiment["runtime"]["rollbacks"]["strategy"] == "always"
    method, rollbacks = _funcs(experiment["method"]), _funcs(experiment["rollbacks"])
    for func in method:
        undo = FAULT_ACTIONS.get(func)
        if undo is not None:
            assert undo in rollbacks, f"{func} in the method but no {undo} in the rollbacks"
            assert undo in method, f"the method must end its own fault ({undo}) before judging"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_fault_has_a_ttl_and_load_runs_throughout(path: Path) -> None:
    experiment = _load(path)
    method = experiment["method"]
    assert method[0]["provider"]["func"] == "start_load", "the load starts first"
    assert method[-1]["provider"]["func"] == "stop_load", "the load stops last"
    for activity in method:
        provider = activity["provider"]
        if provider.get("func") in ("scale_app", "cut_path", "drain_zone"):
            ttl = provider["arguments"].get("ttl_seconds")
            assert isinstance(ttl, int | float) and 0 < ttl <= 300, activity["name"]
        if provider["type"] == "process":
            assert isinstance(provider.get("arguments"), list), "string arguments go through sh"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_hypothesis_judges_the_fault_window(path: Path) -> None:
    """At least one probe reads the fault window from Prometheus; every tolerance is a
    jsonpath on `ok` (the harness's probes return a verdict), except a plain instant query
    (chaostoolkit-prometheus's answer), whose jsonpath expects Prometheus's string value, and
    only in an experiment the steady gate guards (a miss before the method is then not judged,
    where `chaos run` alone would exit 0)."""
    experiment = _load(path)
    probes = experiment["steady-state-hypothesis"]["probes"]
    windowed = [p for p in probes if "kind" in p["provider"].get("arguments", {})]
    assert windowed, "no probe judges the fault window"
    gated = any(c["name"] == "helius-steady-gate" for c in experiment["controls"])
    for probe in probes:
        if probe["provider"]["func"] == "query":
            tolerance = probe["tolerance"]
            assert tolerance["type"] == "jsonpath" and tolerance["path"].startswith("$.data.")
            assert isinstance(tolerance["expect"], str), "Prometheus values are strings"
            assert gated, f"{probe['name']}: a raw tolerance needs the steady gate"
        else:
            assert probe["tolerance"] == {"type": "jsonpath", "path": "$.ok", "expect": True}


def _hypothesis(path: Path) -> list[dict[str, Any]]:
    probes: list[dict[str, Any]] = _load(path)["steady-state-hypothesis"]["probes"]
    return probes


def test_every_experiment_has_a_negative_control_naming_real_probes() -> None:
    controls = load_controls()
    assert {c.experiment for c in controls} == {p.stem for p in EXPERIMENTS}
    by_stem = {p.stem: p for p in EXPERIMENTS}
    for control in controls:
        names = [p["name"] for p in _hypothesis(by_stem[control.experiment])]
        for probe in control.probes:
            assert probe in names, f"{control.experiment}: {probe} is not one of {names}"
        assert control.profile_file.is_file()


def test_every_probe_function_the_catalogue_uses_has_a_negative_control() -> None:
    """A check that cannot fail is a defect: every probe *function* of the catalogue is named
    by at least one control, which `nox -s negative` then shows failing on it."""
    used: dict[str, set[str]] = {}
    for path in EXPERIMENTS:
        for probe in _hypothesis(path):
            used.setdefault(probe["provider"]["func"], set()).add(f"{path.stem}:{probe['name']}")
    covered = set()
    by_stem = {p.stem: p for p in EXPERIMENTS}
    for control in load_controls():
        for probe in _hypothesis(by_stem[control.experiment]):
            if probe["name"] in control.probes:
                covered.add(probe["provider"]["func"])
    assert set(used) - covered == set(), f"no control fails these probe functions: {used}"


# (probe function, the experiment:probe that first uses the setting) with no control yet. The
# list may only shrink: a new setting without a control fails below, and so does an entry that
# a control now covers (remove it). Each needs a plausible mistake just past that allowance.
SETTINGS_WITHOUT_A_CONTROL_YET: set[tuple[str, str]] = set()


def test_every_threshold_setting_the_catalogue_uses_has_a_negative_control() -> None:
    """Coverage by (function, setting), not by function: a control that fails the tail's
    3x + 50 ms says nothing of the 3x + 150 ms where a process restarts. Every setting a probe is
    written with must be named by a control (which `nox -s negative` shows failing), apart
    from the shrinking list above."""
    used = settings_used(ROOT / "experiments")
    covered = {used[c.experiment, probe] for c in load_controls() for probe in c.probes}
    first_use: dict[tuple[str, str], str] = {}
    for (experiment, probe), pair in sorted(used.items()):
        first_use.setdefault(pair, f"{experiment}:{probe}")
    uncovered = {(pair[0], first_use[pair]) for pair in set(used.values()) - covered}
    assert uncovered - SETTINGS_WITHOUT_A_CONTROL_YET == set(), "settings with no control"
    assert SETTINGS_WITHOUT_A_CONTROL_YET - uncovered == set(), "covered now: remove from list"


def test_controls_are_mostly_subtle_mistakes() -> None:
    """Total outages prove little about a threshold: at most two controls may be one."""
    total_outages = {"no-fallback", "hot-path-mlflow", "reco-single-replica"}
    assert sum(c.profile in total_outages for c in load_controls()) <= 2


def test_every_experiment_judges_clients_and_runs_every_probe() -> None:
    """A latency SLO and a success SLO in every experiment, and the judge-every-probe control
    so a deviation shows every failing check, not only the first."""
    for path in EXPERIMENTS:
        funcs = {p["provider"]["func"] for p in _hypothesis(path)}
        assert {"client_success_ratio", "latency_p99_ratio"} <= funcs, path.stem
        controls = [c["provider"]["module"] for c in _load(path).get("controls", [])]
        assert "chaoshelius.slo.judge_all" in controls, path.stem
        ready = [p for p in _hypothesis(path) if p["provider"]["func"] == "pods_ready"]
        assert ready and all(p["provider"]["arguments"]["min_ready"] == 3 for p in ready)


def test_the_files_are_what_the_builder_writes() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "build.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_negative_plan_groups_runs_by_profile() -> None:
    runs = plan(ROOT / "experiments", negative=True)
    profiles = [r.profile for r in runs]
    assert len(runs) == len(load_controls()), "one run per control"
    changes = sum(a != b for a, b in zip(profiles, profiles[1:], strict=False))
    assert changes == len(set(profiles)) - 1, "the runs of one profile are consecutive"
    assert all(r.expected_probes for r in runs)


def test_experiments_readme_lists_every_experiment() -> None:
    readme = (ROOT / "experiments" / "README.md").read_text()
    listed = set(re.findall(r"`([a-z0-9-]+)\.json`", readme))
    assert listed == {p.stem for p in EXPERIMENTS}


def test_chaos_validate_accepts_every_experiment() -> None:
    chaos = Path(sys.executable).with_name("chaos")
    for path in EXPERIMENTS:
        done = subprocess.run(
            [str(chaos), "--no-log-file", "validate", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_discovery_lists_actions_and_probes_from_the_modules() -> None:
    from chaoshelius.discovery import discover

    activities = discover()["activities"]
    kinds = {(a["name"], a["type"]) for a in activities}
    assert ("kill_pods", "action") in kinds
    assert ("client_success_ratio", "probe") in kinds
    assert not {name for name, kind in kinds if kind == "action"} & {
        name for name, kind in kinds if kind == "probe"
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"title": "x"', "Expecting"),
        (
            json.dumps(
                {
                    "title": "t",
                    "description": "d",
                    "method": [
                        {
                            "type": "action",
                            "name": "kill",
                            "provider": {
                                "type": "python",
                                "module": "chaoshelius.pods.actions",
                                "func": "kill_pods",
                                "arguments": {"appp": "mlflow"},
                            },
                        }
                    ],
                }
            ),
            "required argument 'app' is missing",
        ),
    ],
    ids=["broken-json", "wrong-argument"],
)
def test_the_suite_refuses_a_bad_experiment_in_one_line(
    tmp_path: Path, text: str, message: str
) -> None:
    """Before any stack starts: the file, and what is wrong with it, in one line."""
    (tmp_path / "bad.json").write_text(text)
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("chaoshelius")),
            "suite",
            "run",
            "--experiments",
            str(tmp_path),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.json is not a valid experiment" in lines[0], done.stderr
    assert message in lines[0]


def _build_module() -> Any:
    """experiments/build.py as a module (it is a script, not a package member)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "experiments_build", ROOT / "experiments" / "build.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _misspelt_function() -> Any:
    from chaoshelius.catalogue.steps import probe
    from chaoshelius.slo import probes

    return probe("x", probes.client_succes_ratio)


def _misspelt_argument() -> Any:
    from chaoshelius.catalogue.steps import probe
    from chaoshelius.slo import probes

    return probe("x", probes.client_success_ratio, min_ration=0.9)


@pytest.mark.parametrize(
    ("describe", "named"),
    [
        (_misspelt_function, ["broken", "client_succes_ratio"]),
        (
            _misspelt_argument,
            ["broken", "chaoshelius.slo.probes.client_success_ratio", "min_ration"],
        ),
    ],
    ids=["function", "argument"],
)
def test_a_misspelt_function_or_argument_fails_the_generation_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], describe: Any, named: list[str]
) -> None:
    """Not when `chaos run` gets to the step: when the catalogue is written, nothing written."""
    build = _build_module()
    build.CATALOGUE = {**build.CATALOGUE, "broken": describe}
    assert build.main(["--dir", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert all(name in error for name in named), error
    assert not list(tmp_path.glob("*.json"))


def test_a_step_is_written_with_the_public_module_that_exports_its_function() -> None:
    """The module users write is the public activity module (its `__all__`), whatever submodule
    defines the function; a function no activity module exports is refused, and so is an
    action used as a probe."""
    from chaoshelius.catalogue.steps import CatalogueError, action, control, probe
    from chaoshelius.controls import safeguards
    from chaoshelius.pods import actions as pods
    from chaoshelius.slo import probes

    step = probe("p", probes.fallback_never_engaged, grace_seconds=5, kind="path", target="e")
    assert step["provider"]["module"] == "chaoshelius.slo.probes"
    assert step["provider"]["func"] == "fallback_never_engaged"
    assert step["tolerance"] == {"type": "jsonpath", "path": "$.ok", "expect": True}
    assert action("a", pods.kill_pods, after=3, app="mlflow")["pauses"] == {"after": 3}
    with pytest.raises(CatalogueError, match="kill_pods.*not a probe"):
        probe("p", pods.kill_pods, app="mlflow")

    def helper() -> None: ...

    with pytest.raises(CatalogueError, match="helper.*not a probe of the harness"):
        probe("p", helper)
    with pytest.raises(CatalogueError, match="required argument: 'app'"):
        action("a", pods.kill_pods, count=1)
    with pytest.raises(CatalogueError, match="configure_control.*max_p99"):
        control("c", safeguards, max_p99=5.0)


# ---------------------------------------------------------------- descriptions state the thresholds
PLACEHOLDER = re.compile(r"^\$\{(\w+)\}$")
SECONDS_ARGUMENTS = ("seconds", "within_seconds", "grace_seconds")


def _applied(step: dict[str, Any], configuration: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """A step's arguments as applied on the local stack: the function's defaults filled in, a
    `${key}` resolved to its configuration default; each with the key it came from (or "")."""
    import importlib
    import inspect

    provider = step["provider"]
    func = getattr(importlib.import_module(provider["module"]), provider["func"])
    bound = inspect.signature(func).bind_partial(**provider.get("arguments", {}))
    bound.apply_defaults()
    applied = {}
    for name, value in bound.arguments.items():
        match = PLACEHOLDER.match(value) if isinstance(value, str) else None
        key = match.group(1) if match else ""
        applied[name] = (configuration[key]["default"] if key else value, key)
    return applied


def _seconds(value: float, key: str) -> str:
    """'20 s (helius_fallback_within_seconds': a number of seconds and the key it is the local
    default of."""
    return f"{value:g} s ({key}" if key else f"{value:g} s"


def _claims(data: dict[str, Any]) -> list[str]:
    """What the description must say, read from the experiment's own steps (not typed twice):
    every fault's TTL and hold, a latency cut's delay, the client SLOs' floors and allowances,
    every "within N s" bound, and the configuration key of each value that is one."""
    configuration = data["configuration"]
    claims: list[str] = []
    for step in data["method"]:
        args = _applied(step, configuration)
        if "ttl_seconds" in args:
            claims.append("TTL " + _seconds(*args["ttl_seconds"]))
            hold = PLACEHOLDER.match(str(step.get("pauses", {}).get("after", "")))
            if hold:
                claims.append(_seconds(configuration[hold.group(1)]["default"], hold.group(1)))
        rate, rate_key = args.get("rate", (None, ""))
        if rate:  # a stated load, not one shrunk with the service
            claims.append(f"load at {rate:g} requests/s" + (f" ({rate_key}" if rate_key else ""))
        if args.get("latency_ms", (None,))[0]:
            claims.append(f"{args['latency_ms'][0]:g} ms")
    for probe in data["steady-state-hypothesis"]["probes"]:
        applied = _applied(probe, configuration)
        args = {name: value for name, (value, _) in applied.items()}
        func, name = probe["provider"]["func"], probe["name"]
        if func == "latency_p99_ratio":
            claims += [
                f"p99 <= {args['max_ratio']:g}x the p99 before "
                f"+ {args['noise_seconds'] * 1000:g} ms",
                f"p50 <= {args['p50_max_ratio']:g}x the p50 before "
                f"+ {args['p50_noise_seconds'] * 1000:g} ms",
            ]
            claims += [
                f"{q} <= {args[key]:g} ms ({applied[key][1]}"
                for q, key in (("p99", "slo_p99_ms"), ("p50", "slo_p50_ms"))
                if args[key] is not None
            ]
        if func == "client_success_ratio":
            claims += [
                f"success >= {args['min_ratio'] * 100:g} %",
                f"no {args['worst_window_seconds']:g} s",
                f"below {args['min_worst_ratio'] * 100:g} %",
                f"throughput >= {args['min_throughput_ratio'] * 100:g} %",
            ]
        for argument in SECONDS_ARGUMENTS:
            if argument in args:
                claims += [f"{name}: ", _seconds(*applied[argument])]
    return claims


def _unstated(data: dict[str, Any]) -> list[str]:
    return [claim for claim in _claims(data) if claim not in data["description"]]


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_the_description_states_the_thresholds_the_steps_apply(path: Path) -> None:
    """The descriptions drifted from the steps once ("TTL 90 s" where it was 120, "2x + 10 ms"
    where the probe allowed 3x + 50 ms): every number a run applies is in its description."""
    data = json.loads(path.read_text())
    assert _unstated(data) == [], data["description"]


def test_the_description_check_catches_the_drift_it_was_written_for() -> None:
    """mlflow-latency as it was committed before the descriptions were rendered."""
    data = json.loads((ROOT / "experiments" / "mlflow-latency.json").read_text())
    data["description"] = (
        "Add 800 ms of latency on the reco-mlflow path (TTL 90 s) for 20 s under load, then "
        "restore. Requests never wait for MLflow, so the client p99 over the fault and its "
        "recovery stays within 2x the p99 before it (+10 ms of measured noise), clients see "
        "no errors and no recommender is restarted."
    )
    unstated = _unstated(data)
    assert "TTL 120 s (helius_fault_ttl_seconds" in unstated
    assert "p99 <= 3x the p99 before + 50 ms" in unstated
