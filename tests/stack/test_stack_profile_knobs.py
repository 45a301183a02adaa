"""The profile knobs for MLflow's readiness and for the alert rules (the negative controls
`mlflow-ready-after-120s` and `degraded-alert-on-up`): real files, real promtool and
Prometheus, real child processes under the supervisor.

- `alert_rules_patch`: Prometheus loads a patched copy of the shared rules file with one
  alert's `for` / `expr` changed, every other rule as shipped; a patch that names no alert of
  the file, or a malformed one, is a one-line error naming it. promtool shows the patched
  `for: 30s` quiet at 30 s where the shipped rule fires.
- `mlflow_readiness.initial_delay_seconds`: a pod that answers its ready path is not Ready
  before the delay (the kubelet's `initialDelaySeconds`), and slot 0 still lets the other
  replicas start as soon as it answers.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import yaml

from chaoshelius.stack import auth, prometheus
from chaoshelius.stack.boot import PrometheusProcess
from chaoshelius.stack.config import (
    LIVE_FIELDS,
    PROFILES_DIR,
    AlertRulePatch,
    ReadinessProbe,
    StackConfig,
)
from chaoshelius.stack.errors import StackError
from chaoshelius.stack.ports import StackPorts
from chaoshelius.stack.state import StackPaths
from chaoshelius.stack.supervisor import PodSpec, Supervisor
from chaoshelius.topology import App, Probe

SHIPPED_RULES = prometheus.DEFAULT_RULES
PATCH = "alert_rules_patch"
FOR_30S = {"MLflowDegraded": AlertRulePatch(**{"for": "30s"})}


def _alerts(text: str) -> dict[str, dict[str, object]]:
    data = yaml.safe_load(text)
    return {r["alert"]: r for g in data["groups"] for r in g["rules"] if "alert" in r}


def _profile(tmp_path: Path, body: str) -> StackConfig:
    path = tmp_path / "profile.yml"
    path.write_text(body)
    return StackConfig.load(path)


# ------------------------------------------------------------------------- the profile keys
def test_the_default_profile_is_the_shipped_system() -> None:
    config = StackConfig()
    assert config.alert_rules_patch == {}
    assert config.mlflow_readiness == ReadinessProbe()
    assert config.mlflow_readiness.initial_delay_seconds == 0
    assert config.boot_allowance_seconds == 0
    rule_files = prometheus.config(1, 2, Path("t.json"), Path("tok"))["rule_files"]
    assert rule_files == [str(prometheus.rules_file())]


def test_the_two_control_profiles_load_and_swap_in_place() -> None:
    alert = StackConfig.load(PROFILES_DIR / "degraded-alert-on-up.yml")
    assert list(alert.alert_rules_patch) == ["MLflowDegraded"]
    assert "up{" in str(alert.alert_rules_patch["MLflowDegraded"].expr)
    ready = StackConfig.load(PROFILES_DIR / "mlflow-ready-after-120s.yml")
    assert ready.mlflow_readiness.initial_delay_seconds == 120
    assert ready.boot_allowance_seconds == 120
    for config in (alert, ready):  # a Prometheus / MLflow change, not the recommender's ...
        assert StackConfig().model_dump(include=LIVE_FIELDS) != config.model_dump(
            include=LIVE_FIELDS
        )
        # ... a running stack takes live, keeping its recommender pods
        assert StackConfig().swappable_to(config) and config.swappable_to(StackConfig())
        assert not StackConfig().recommender_differs(config)
        # stack.json and profile.json hold the JSON dump: it must read back as the same profile
        assert StackConfig.model_validate(config.model_dump(mode="json")) == config


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("alert_rules_patch: {MLflowDegraded: {for: 30 sec}}", f"{PATCH}.MLflowDegraded.for"),
        ("alert_rules_patch: {MLflowDegraded: {fore: 30s}}", f"{PATCH}.MLflowDegraded.fore"),
        ("alert_rules_patch: {MLflowDegraded: {}}", f"{PATCH}.MLflowDegraded"),
        ("alert_rules_patch: {MLflowDegraded: {expr: ''}}", f"{PATCH}.MLflowDegraded.expr"),
        ("mlflow_readiness: {initial_delay_seconds: -1}", "mlflow_readiness.initial_delay_seconds"),
        ("mlflow_readiness: {initial_delay: 120}", "mlflow_readiness.initial_delay"),
    ],
)  # fmt: skip
def test_a_malformed_knob_is_one_line_naming_the_key(tmp_path: Path, body: str, key: str) -> None:
    with pytest.raises(StackError) as caught:
        _profile(tmp_path, body)
    message = str(caught.value)
    assert f"key {key!r}" in message and "\n" not in message, message


# ------------------------------------------------------------------------ the patched rules
def test_a_patch_changes_one_alert_and_nothing_else() -> None:
    text = prometheus.patched_rules(SHIPPED_RULES, FOR_30S)
    shipped, patched = yaml.safe_load(SHIPPED_RULES.read_text()), yaml.safe_load(text)
    assert _alerts(text)["MLflowDegraded"]["for"] == "30s"
    assert _alerts(SHIPPED_RULES.read_text())["MLflowDegraded"]["for"] == "10s"  # untouched
    rules_before = [r for g in shipped["groups"] for r in g["rules"]]
    rules_after = [r for g in patched["groups"] for r in g["rules"]]
    for before, after in zip(rules_before, rules_after, strict=True):
        if before.get("alert") != "MLflowDegraded":
            assert after == before
        else:
            assert after == {**before, "for": "30s"}


def test_a_patch_can_replace_an_expression() -> None:
    expr = 'sum(increase(reco_engine_refresh_failures_total{reason="unavailable"}[30s])) > 0'
    text = prometheus.patched_rules(SHIPPED_RULES, {"MLflowDegraded": AlertRulePatch(expr=expr)})
    assert _alerts(text)["MLflowDegraded"]["expr"] == expr
    assert _alerts(text)["MLflowDegraded"]["for"] == "10s"


def test_a_patch_naming_an_alert_the_file_lacks_names_the_known_ones() -> None:
    with pytest.raises(StackError, match=r"no alert \['MLflowDegradedd'\] in .*MLflowDown"):
        prometheus.patched_rules(SHIPPED_RULES, {"MLflowDegradedd": AlertRulePatch(expr="1")})


# a refresh failure every 2 s from 12 s on (as in an RDS cut): the shipped `for: 10s` fires by
# 30 s, the patched `for: 30s` does not (so `promtool test rules` passes only on the patch)
QUIET_AT_30S = """
rule_files: [{rules}]
evaluation_interval: 1s
tests:
  - interval: 2s
    input_series:
      - series: 'reco_engine_refresh_failures_total{{pod="p",reason="unavailable"}}'
        values: '0x5 1+1x30'
    alert_rule_test:
      - eval_time: 30s
        alertname: MLflowDegraded
        exp_alerts: []
"""


def test_promtool_sees_the_patched_for_hold_the_alert_back(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool must be installed (apt-get install prometheus; nox does it)"
    patched = tmp_path / "patched.yml"
    patched.write_text(prometheus.patched_rules(SHIPPED_RULES, FOR_30S))
    results = {}
    for name, rules in (("shipped", SHIPPED_RULES), ("patched", patched)):
        test = tmp_path / f"{name}.test.yml"
        test.write_text(QUIET_AT_30S.format(rules=rules))
        done = subprocess.run(
            [promtool, "test", "rules", str(test)], capture_output=True, text=True, check=False
        )
        results[name] = done.returncode
    assert results == {"shipped": 1, "patched": 0}, results


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed")
def test_the_stack_prometheus_loads_the_patched_copy(tmp_path: Path) -> None:
    paths = StackPaths(tmp_path / "state")
    paths.create()
    auth.create_token(paths.root)
    port = _free_port()  # Prometheus listens at base + 90; nothing else of the stack runs
    process = PrometheusProcess(paths, StackPorts(port - 90), FOR_30S)
    process.start()
    try:
        deadline = time.monotonic() + 30
        while not process.ready():
            assert time.monotonic() < deadline, "Prometheus did not become ready"
            time.sleep(0.2)
        body = httpx.get(f"http://127.0.0.1:{port}/api/v1/rules?type=alert").json()
        rules = {r["name"]: r for g in body["data"]["groups"] for r in g["rules"]}
        assert rules["MLflowDegraded"]["duration"] == 30
        assert rules["MLflowDown"]["duration"] == 10  # the others as shipped
        assert paths.prometheus_rules.is_file()
        assert SHIPPED_RULES.read_text() != paths.prometheus_rules.read_text()
    finally:
        asyncio.run(process.stop())


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed")
def test_a_running_prometheus_takes_a_patch_and_drops_it_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The in-place profile swap of `degraded-alert-on-up`: SIGHUP, and the reload confirmed
    by Prometheus itself; a rules file Prometheus rejects is an error naming its log."""
    paths = StackPaths(tmp_path / "state")
    paths.create()
    auth.create_token(paths.root)
    port = _free_port()
    process = PrometheusProcess(paths, StackPorts(port - 90))
    process.start()

    def durations() -> dict[str, object]:
        body = httpx.get(f"http://127.0.0.1:{port}/api/v1/rules?type=alert").json()
        return {r["name"]: r["duration"] for g in body["data"]["groups"] for r in g["rules"]}

    try:
        deadline = time.monotonic() + 30
        while not process.ready():
            assert time.monotonic() < deadline, "Prometheus did not become ready"
            time.sleep(0.2)
        assert durations()["MLflowDegraded"] != 30
        shipped = durations()
        asyncio.run(process.reload(FOR_30S, time.monotonic() + 30))
        assert durations() == {**shipped, "MLflowDegraded": 30}
        asyncio.run(process.reload({}, time.monotonic() + 30))
        assert durations() == shipped
        broken = tmp_path / "broken.yml"
        broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: (\n")
        monkeypatch.setenv("HELIUS_ALERT_RULES", str(broken))
        with pytest.raises(StackError, match="did not take the new alert rules.*prometheus.log"):
            asyncio.run(process.reload({}, time.monotonic() + 30))
    finally:
        asyncio.run(process.stop())


def test_reload_is_read_from_prometheus_own_metrics() -> None:
    from chaoshelius.stack.boot import _reloaded_since

    ok = "prometheus_config_last_reload_successful 1\n"
    at = "prometheus_config_last_reload_success_timestamp_seconds {}\n"
    assert _reloaded_since(ok + at.format("1.0e+09"), 1e9 + 0.6) is True  # whole seconds
    assert _reloaded_since(ok + at.format("1.0e+09"), 1e9 + 1) is None  # not yet
    assert _reloaded_since("prometheus_config_last_reload_successful 0\n", 0) is False
    assert _reloaded_since("", 0) is None


# ---------------------------------------------------------------------- readiness delays
SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(500 if self.path == "/dead" else 200)
        self.end_headers(); self.wfile.write(b"x")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def _server_spec(readiness: ReadinessProbe) -> PodSpec:
    """MLflow pods played by a tiny HTTP server (every path 200, `/dead` 500)."""
    return PodSpec(
        App.MLFLOW,
        lambda pod: [sys.executable, "-c", SERVER, str(pod.port)],
        lambda pod: {},
        "/ready",
        readiness=readiness,
    )


def _supervisor(tmp_path: Path, spec: PodSpec, replicas: int, ports: range) -> Supervisor:
    return Supervisor(
        {App.MLFLOW: spec},
        {App.MLFLOW: lambda index: "zone-a"},
        {App.MLFLOW: replicas},
        list(ports),
        tmp_path / "logs",
        tmp_path / "run",
        replace_delay=0.1,
    )


def test_a_readiness_delay_holds_a_serving_pod_out_and_not_its_peers(tmp_path: Path) -> None:
    delay = 4.0  # long enough that slot 0 answers well within it on a loaded machine
    readiness = ReadinessProbe(initial_delay_seconds=delay, period_seconds=0.1)
    supervisor = _supervisor(tmp_path, _server_spec(readiness), 2, range(29540, 29560))

    async def watch() -> tuple[float, float, int]:
        supervisor.enable([App.MLFLOW], leader_first=[App.MLFLOW])
        runner = asyncio.create_task(supervisor.run())
        started = time.monotonic()
        both_running_at = ready_at = 0.0
        try:
            while time.monotonic() - started < 2 * delay + 3 and not ready_at:
                await asyncio.sleep(0.05)
                pods = supervisor.pods()
                if len(pods) == 2 and not both_running_at:
                    both_running_at = time.monotonic() - started
                if pods and all(p.ready for p in pods) and len(pods) == 2:
                    ready_at = time.monotonic() - started
            return both_running_at, ready_at, len(supervisor.pods())
        finally:
            runner.cancel()
            await supervisor.shutdown()

    both_running_at, ready_at, count = asyncio.run(watch())
    assert count == 2
    # slot 1 starts once slot 0 answers (well before slot 0's delay has passed) ...
    assert 0 < both_running_at < delay - 1.0, both_running_at
    # ... and no pod is Ready before its own delay, though both answer within a second
    assert ready_at >= delay, ready_at
    assert ready_at < both_running_at + delay + 2.0, (both_running_at, ready_at)


def test_probe_settings_swapped_in_apply_to_the_running_pods_and_their_replacements(
    tmp_path: Path,
) -> None:
    """The in-place swap of MLflow's probes (`mlflow-ready-after-120s`,
    `mlflow-liveness-is-readiness`): the supervisor reads the app's spec at every probe, so a
    running pod keeps its Ready state (its delay is long past, as after a finished rollout) and
    takes a new liveness probe at once; its replacement waits out the new readiness delay."""
    delay = 3.0
    spec = _server_spec(ReadinessProbe(period_seconds=0.1))
    supervisor = _supervisor(tmp_path, spec, 1, range(29560, 29580))

    async def until(check: object, limit: float) -> float:
        started = time.monotonic()
        while not check():  # type: ignore[operator]
            assert time.monotonic() - started < limit, "timed out"
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    async def scenario() -> tuple[bool, float, int]:
        supervisor.enable([App.MLFLOW])
        runner = asyncio.create_task(supervisor.run())
        try:
            await until(lambda: any(p.ready for p in supervisor.pods()), 20)
            first = supervisor.pods()[0]
            delayed = ReadinessProbe(initial_delay_seconds=delay, period_seconds=0.1)
            supervisor.specs[App.MLFLOW] = replace(spec, readiness=delayed)
            await asyncio.sleep(0.5)
            still_ready = first.ready  # the running pod: its delay is long past
            supervisor.kill([first])
            await until(lambda: [p for p in supervisor.pods() if p is not first], 10)
            replacement = next(p for p in supervisor.pods() if p is not first)
            await until(lambda: replacement.ready, 20)
            ready_at = time.time() - replacement.started_at
            dead = Probe("/dead", 0.2, 2, 1.0)  # a liveness probe that fails, swapped in
            supervisor.specs[App.MLFLOW] = replace(spec, readiness=delayed, liveness=dead)
            await until(lambda: replacement.liveness_kills > 0, 10)
            return still_ready, ready_at, replacement.liveness_kills
        finally:
            runner.cancel()
            await supervisor.shutdown()

    still_ready, ready_at, kills = asyncio.run(scenario())
    assert still_ready
    assert ready_at >= delay, ready_at  # the replacement waited out the new delay
    assert ready_at < delay + 5, ready_at
    assert kills == 1  # the running pod took the new liveness probe at once
