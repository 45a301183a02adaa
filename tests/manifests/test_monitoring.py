"""The monitoring files: alert and recording rules, runbooks, prometheus.yml, the one copy.

- `promtool check rules` / `promtool test rules` (manifests/monitoring/rules/tests); mutated
  copies of the rules show that those tests can fail, for every alert, in both directions (an
  alert that never fires, an alert that fires when it should stay quiet).
- Recording rules named `level:metric:operations`; no other recorded name anywhere in the repo.
- Every alert: summary, description, runbook_url and its page in docs/runbooks.
- prometheus.yml: `promtool check config` (Debian's build lacks Kubernetes SD: then on a copy
  with a file_sd stand-in) plus a schema check of the kubernetes_sd block.
- Series the rules and the dashboard query exist in the service, load generator or harness.

Each check is shown to fail on deliberately broken copies. The checks themselves live in
monitoring_checks.py; the dashboard's tests in test_grafana_dashboard.py.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import monitoring_checks as checks
import pytest
import yaml
from k8s_paths import MANIFESTS, REPO
from prometheus_client import CollectorRegistry

from chaoshelius.stack.prometheus import DEFAULT_RULES

MONITORING = MANIFESTS / "monitoring"
RULES = MONITORING / "rules" / "helius-alerts.yml"
RULE_TESTS = MONITORING / "rules" / "tests" / "helius-alerts.test.yml"
PROMETHEUS_YML = MONITORING / "prometheus" / "prometheus.yml"
DASHBOARD = MONITORING / "dashboards" / "helius-resilience.json"
DATASOURCES = MONITORING / "grafana" / "datasources.yaml"

# What the issue asks the alerts to cover -> the alert that covers it.
REQUIRED_ALERTS = {
    "fallback mode": "RecoEngineInFallback",
    "MLflow down": "MLflowDown",
    "MLflow degraded": "MLflowDegraded",
    "request error ratio": "RecoEngineHighErrorRatio",
    "latency SLO": "RecoEngineLatencySLO",
    "backlog / saturation": "RecoEngineSaturated",
}
# A loosened condition per alert: it then fires where its unit tests expect quiet.
LOOSENED = {
    "RecoEngineInFallback": ("== 1", ">= 0"),
    "MLflowDown": ("== 0", ">= 0"),
    "MLflowDegraded": ("> 0", ">= 0"),
    "MLflowReplicasDegraded": ("< 3", "< 4"),
    "RecoEngineReplicasDegraded": ("< 3", "< 4"),
    "RecoEngineHighErrorRatio": ("> 0.01", ">= 0"),
    "RecoClientHighFailureRatio": ("> 0.01", ">= 0"),
    "RecoEngineLatencySLO": ("> 0.25", "> 0.05"),
    "RecoEngineSaturated": ("> 32", "> 1"),
}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)


def _rules() -> dict[str, Any]:
    rules: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return rules


_alerts = checks.alerts
_records = checks.records


def _promtool_test(tmp_path: Path, promtool: str, rules: dict[str, Any]) -> int:
    """`promtool test rules` with the real unit tests over `rules`; its exit code."""
    (tmp_path / "rules" / "tests").mkdir(parents=True)
    (tmp_path / "rules" / "helius-alerts.yml").write_text(yaml.safe_dump(rules))
    test = tmp_path / "rules" / "tests" / "helius-alerts.test.yml"
    shutil.copy(RULE_TESTS, test)
    return _run(promtool, "test", "rules", str(test)).returncode


def _promtool_check_exprs(
    promtool: str, exprs: list[str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` over `exprs` written as recording rules (it parses each one)."""
    rules = {
        "groups": [
            {
                "name": "queries",
                "rules": [{"record": f"query:q{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules))
    return _run(promtool, "check", "rules", str(path))


# ------------------------------------------------------------------------------ promtool
def test_rules_pass_promtool_check(promtool: str) -> None:
    done = _run(promtool, "check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_rule_unit_tests_pass(promtool: str) -> None:
    done = _run(promtool, "test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_required_alert_exists_and_is_unit_tested() -> None:
    alerts = _alerts(_rules())
    assert set(REQUIRED_ALERTS.values()) <= set(alerts)
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    evals = [e for t in tests for e in t.get("alert_rule_test", [])]
    for name in alerts:
        mine = [e for e in evals if e["alertname"] == name]
        assert any(e["exp_alerts"] for e in mine), f"{name}: no case where it fires"
        assert any(not e["exp_alerts"] for e in mine), f"{name}: no case where it stays quiet"
    assert set(LOOSENED) == set(alerts), "every alert needs a loosened mutation below"


@pytest.mark.parametrize("alert", sorted(LOOSENED))
def test_unit_tests_catch_an_alert_that_never_fires(
    alert: str, promtool: str, tmp_path: Path
) -> None:
    rules = _rules()
    _alerts(rules)[alert]["expr"] = "absent(vector(1))"  # always empty
    assert _promtool_test(tmp_path, promtool, rules) != 0


@pytest.mark.parametrize("alert", sorted(LOOSENED))
def test_unit_tests_catch_an_alert_that_fires_too_easily(
    alert: str, promtool: str, tmp_path: Path
) -> None:
    rules = _rules()
    rule = _alerts(rules)[alert]
    old, new = LOOSENED[alert]
    assert rule["expr"].count(old) == 1, f"{alert}: update LOOSENED, {old!r} not in its expr"
    rule["expr"] = rule["expr"].replace(old, new)
    assert _promtool_test(tmp_path, promtool, rules) != 0


def test_the_mutation_harness_passes_the_real_rules(promtool: str, tmp_path: Path) -> None:
    assert _promtool_test(tmp_path, promtool, _rules()) == 0


# ------------------------------------------------------------------------------ recording rules
def test_recording_rules_follow_level_metric_operations() -> None:
    records = _records(_rules())
    assert len(records) >= 4
    problems = [p for n, expr in records.items() for p in checks.record_name_problems(n, expr)]
    assert not problems, problems


@pytest.mark.parametrize(
    "name",
    [
        "helius:reco_engine_requests:rate30s",  # level is not what the by clause keeps
        "job:reco_engine_requests:rate30s",  # no `job` label survives the sum
        "namespace:reco_engine_requests:rate1m",  # window of the expression is 30s
        "namespace:reco_engine_requests:sum30s",  # the function is rate
        "namespace:reco_engine_requests_total:rate30s",  # _total kept after rate()
        "namespace:reco_engine_requests",  # no operations
    ],
)
def test_the_naming_check_catches_a_bad_name(name: str) -> None:
    expr = _records(_rules())["namespace:reco_engine_requests:rate30s"]
    assert checks.record_name_problems(name, expr)


def test_the_naming_check_catches_a_bad_quantile_name() -> None:
    record = "namespace:reco_engine_requests_latency_seconds:p99_rate1m"
    expr = _records(_rules())[record]
    assert not checks.record_name_problems(record, expr)
    assert checks.record_name_problems(record.replace(":p99_", ":p95_"), expr)
    assert checks.record_name_problems(record.replace("namespace:", "namespace_le:"), expr)


def _tracked_text_files() -> list[Path]:
    tracked = _run("git", "-C", str(REPO), "ls-files", "-z").stdout.split("\0")
    suffixes = (".py", ".md", ".yml", ".yaml", ".json", ".j2", ".toml")
    paths = [REPO / p for p in tracked if p.endswith(suffixes) and (REPO / p).is_file()]
    return [p for p in paths if p != Path(__file__)]  # this file spells bad names on purpose


def test_every_recorded_series_used_in_the_repo_is_recorded() -> None:
    """Alerts, rule tests, the dashboard, docs and Python name only series the rules record
    (a renamed rule left behind anywhere is an empty panel or a silent alert)."""
    recorded = set(_records(_rules()))
    used = {
        (path.relative_to(REPO).as_posix(), name)
        for path in _tracked_text_files()
        for name in checks.RECORD_USE.findall(path.read_text(errors="replace"))
    }
    unknown = sorted((path, name) for path, name in used if name not in recorded)
    assert not unknown, unknown
    users = {path for path, _ in used}
    assert {
        "manifests/monitoring/rules/tests/helius-alerts.test.yml",
        "manifests/monitoring/dashboards/helius-resilience.json",
    } <= users
    rules = _rules()
    readers = [RULE_TESTS.read_text(), DASHBOARD.read_text()]
    readers += [r["expr"] for r in _alerts(rules).values()] + list(_records(rules).values())
    read = {name for text in readers for name in checks.RECORD_USE.findall(text)}
    assert recorded <= read, f"recorded, read by no alert, rule test or panel: {recorded - read}"


# ------------------------------------------------------------------------------ runbooks
def test_every_alert_has_a_runbook_page() -> None:
    assert checks.runbook_problems(_rules(), REPO) == []


def test_runbook_queries_parse(promtool: str, tmp_path: Path) -> None:
    exprs = [
        expr
        for page in sorted((REPO / checks.RUNBOOK_DIR).glob("*.md"))
        for expr in checks.promql_blocks(page.read_text())
    ]
    assert len(exprs) >= 2 * len(_alerts(_rules()))
    done = _promtool_check_exprs(promtool, exprs, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_promql_check_catches_a_broken_query(promtool: str, tmp_path: Path) -> None:
    done = _promtool_check_exprs(promtool, ["sum by (pod (up)"], tmp_path)
    assert done.returncode != 0


def _drop_annotation(key: str) -> Callable[[dict[str, Any], Path], None]:
    def mutate(rules: dict[str, Any], repo: Path) -> None:
        del _alerts(rules)["MLflowDown"]["annotations"][key]

    return mutate


def _edit_page(old: str, new: str) -> Callable[[dict[str, Any], Path], None]:
    def mutate(rules: dict[str, Any], repo: Path) -> None:
        page = repo / checks.runbook_url("MLflowDegraded")
        assert old in page.read_text()
        page.write_text(page.read_text().replace(old, new))

    return mutate


def _loosen_mlflow_degraded(rules: dict[str, Any], repo: Path) -> None:
    _alerts(rules)["MLflowDegraded"]["expr"] = _alerts(rules)["MLflowDegraded"]["expr"].replace(
        "> 0", "> 1"
    )


def _remove_page(rules: dict[str, Any], repo: Path) -> None:
    (repo / checks.runbook_url("RecoEngineSaturated")).unlink()


def _orphan_page(rules: dict[str, Any], repo: Path) -> None:
    (repo / checks.RUNBOOK_DIR / "RecoEngineGone.md").write_text("# RecoEngineGone\n")


def _wrong_url(rules: dict[str, Any], repo: Path) -> None:
    _alerts(rules)["MLflowDown"]["annotations"]["runbook_url"] = "docs/runbooks/mlflow-down.md"


def _unlisted(rules: dict[str, Any], repo: Path) -> None:
    index = repo / checks.RUNBOOK_DIR / "README.md"
    index.write_text(index.read_text().replace("(RecoEngineLatencySLO.md)", "(latency.md)"))


BROKEN_RUNBOOKS = {
    "no runbook_url": _drop_annotation("runbook_url"),
    "no summary": _drop_annotation("summary"),
    "no description": _drop_annotation("description"),
    "runbook_url elsewhere": _wrong_url,
    "page missing": _remove_page,
    "page without an alert": _orphan_page,
    "section missing": _edit_page("## What to do\n", "## Next steps\n"),
    "wrong title": _edit_page("# MLflowDegraded\n", "# MLflow degraded\n"),
    "expression out of date": _loosen_mlflow_degraded,
    "not in the index": _unlisted,
}


@pytest.mark.parametrize("broken", sorted(BROKEN_RUNBOOKS))
def test_the_runbook_check_catches(broken: str, tmp_path: Path) -> None:
    shutil.copytree(REPO / checks.RUNBOOK_DIR, tmp_path / checks.RUNBOOK_DIR)
    rules = _rules()
    assert checks.runbook_problems(rules, tmp_path) == []  # the copy itself is fine
    BROKEN_RUNBOOKS[broken](rules, tmp_path)
    assert checks.runbook_problems(rules, tmp_path)


# ------------------------------------------------------------------------------ prometheus.yml
def _prometheus_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_YML.read_text())
    return config


def _promtool_check_config(
    promtool: str, config: dict[str, Any], tmp_path: Path
) -> tuple[str, subprocess.CompletedProcess[str]]:
    """`promtool check config` on `config`, its rule_files pointed at the rules directory the
    Deployment mounts at /etc/prometheus/rules (so the rules are checked as loaded).

    A promtool built with Kubernetes SD (upstream's) checks the file as it is. Debian's 2.42
    is built without it and rejects `kubernetes_sd_configs` as an unknown field: it then
    checks a copy where a file_sd stands in for that block (everything else - globals,
    durations, relabel actions, regexes and target labels, rule files - is checked by
    promtool itself), and `checks.kubernetes_sd_problems` checks the block against the
    documented schema. Returns which of the two ran, and promtool's result."""
    config = dict(config, rule_files=[str(RULES.parent / "*.yml")])
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    done = _run(promtool, "check", "config", str(path))
    if done.returncode != 0 and checks.KUBERNETES_SD_UNKNOWN in done.stdout + done.stderr:
        targets = tmp_path / "targets.json"
        targets.write_text("[]")
        path.write_text(yaml.safe_dump(checks.without_kubernetes_sd(config, targets)))
        return "file_sd stand-in", _run(promtool, "check", "config", str(path))
    return "as is", done


def test_prometheus_yml_passes_promtool_check_config(promtool: str, tmp_path: Path) -> None:
    how, done = _promtool_check_config(promtool, _prometheus_config(), tmp_path)
    assert done.returncode == 0, f"promtool check config ({how}):\n{done.stdout}{done.stderr}"
    assert "SUCCESS" in done.stdout and "13 rules found" in done.stdout, done.stdout


def test_kubernetes_sd_follows_the_schema() -> None:
    assert checks.kubernetes_sd_problems(_prometheus_config()) == []


def _job(config: dict[str, Any]) -> dict[str, Any]:
    job: dict[str, Any] = config["scrape_configs"][0]
    return job


def _relabel(config: dict[str, Any], target: str) -> dict[str, Any]:
    return next(r for r in _job(config)["relabel_configs"] if r.get("target_label") == target)


BROKEN_FOR_PROMTOOL: dict[str, Callable[[dict[str, Any]], None]] = {
    "timeout above interval": lambda c: c["global"].update(scrape_timeout="10s"),
    "bad duration": lambda c: c["global"].update(evaluation_interval="5 seconds"),
    "bad relabel regex": lambda c: _relabel(c, "__address__").update(regex="(.+;(\\d+)"),
    "unknown relabel action": lambda c: _job(c)["relabel_configs"][0].update(action="keepp"),
    "invalid target label": lambda c: _relabel(c, "zone").update(target_label="zo-ne"),
    "unknown scrape key": lambda c: _job(c).update(scrape_intervall="5s"),
    "duplicate job": lambda c: c["scrape_configs"].append(dict(_job(c))),
}


@pytest.mark.parametrize("broken", sorted(BROKEN_FOR_PROMTOOL))
def test_promtool_check_config_catches(broken: str, promtool: str, tmp_path: Path) -> None:
    config = copy.deepcopy(_prometheus_config())
    BROKEN_FOR_PROMTOOL[broken](config)
    how, done = _promtool_check_config(promtool, config, tmp_path)
    assert done.returncode != 0, f"{how}: {done.stdout}"
    assert checks.KUBERNETES_SD_UNKNOWN not in done.stdout + done.stderr  # failed on the fault


def _sd(config: dict[str, Any]) -> dict[str, Any]:
    sd: dict[str, Any] = _job(config)["kubernetes_sd_configs"][0]
    return sd


BROKEN_KUBERNETES_SD: dict[str, Callable[[dict[str, Any]], None]] = {
    "unknown key": lambda c: _sd(c).update(namespace={"names": ["helius"]}),
    "unknown role": lambda c: _sd(c).update(role="pods"),
    "namespaces typo": lambda c: _sd(c).update(namespaces={"name": ["helius"]}),
    "node labels without attach_metadata": lambda c: _sd(c).pop("attach_metadata"),
    "attach_metadata not a boolean": lambda c: _sd(c).update(attach_metadata={"node": "yes"}),
    "attach_metadata.node on role service": lambda c: _sd(c).update(role="service"),
    "api_server and kubeconfig_file": lambda c: _sd(c).update(
        api_server="https://k8s:6443", kubeconfig_file="/kubeconfig"
    ),
    "selector without role": lambda c: _sd(c).update(selectors=[{"label": "app=mlflow"}]),
    "meta label typo": lambda c: _relabel(c, "app").update(
        source_labels=["__meta_kubernetes_pod_labels_app"]
    ),
    "no kubernetes_sd at all": lambda c: _job(c).update(
        kubernetes_sd_configs=[], static_configs=[{"targets": ["127.0.0.1:9090"]}]
    ),
}


@pytest.mark.parametrize("broken", sorted(BROKEN_KUBERNETES_SD))
def test_the_kubernetes_sd_check_catches(broken: str) -> None:
    config = copy.deepcopy(_prometheus_config())
    BROKEN_KUBERNETES_SD[broken](config)
    assert checks.kubernetes_sd_problems(config)


# ------------------------------------------------------------------------------ one copy
def test_one_rules_file_serves_both_targets(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert DEFAULT_RULES.resolve() == RULES.resolve()  # the local stack loads this file
    for target in ("kind", "aws"):
        config = next(
            o
            for o in rendered[target]
            if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("prometheus-config")
        )
        assert config["data"]["helius-alerts.yml"] == RULES.read_text()
        assert config["data"]["prometheus.yml"] == PROMETHEUS_YML.read_text()
    tracked = _run("git", "-C", str(REPO), "ls-files", "-z").stdout.split("\0")
    copies = [
        path
        for path in tracked
        if path.endswith((".yml", ".yaml"))
        and (REPO / path).is_file()
        and "alert: RecoEngineInFallback" in (REPO / path).read_text(errors="replace")
    ]
    assert copies == ["manifests/monitoring/rules/helius-alerts.yml"]


def test_prometheus_loads_the_rules_where_the_deployment_mounts_them(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    deployment = next(
        o
        for o in rendered["kind"]
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "prometheus"
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    items = volumes["rules"]["configMap"]["items"]
    mounted = {f"{mounts['rules']}/{item['path']}" for item in items}
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    assert mounted == {"/etc/prometheus/rules/helius-alerts.yml"}
    assert "--config.file=/etc/prometheus/prometheus.yml" in container["args"]


# ------------------------------------------------------------------------------ metric names
_SUFFIXES = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_count", "_sum"]}
_CONSTRUCTORS = {
    "Counter": "counter",
    "Gauge": "gauge",
    "Histogram": "histogram",
    "GaugeMetricFamily": "gauge",
    "CounterMetricFamily": "counter",
    "HistogramMetricFamily": "histogram",
}


def _declared_metrics(source: Path) -> set[str]:
    """Series names a module declares (`Counter("x", ...)` -> x_total), read with `ast`: the
    load generator's module must not be imported (importing locust patches the process)."""
    names = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _CONSTRUCTORS
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            kind = _CONSTRUCTORS[node.func.id]
            names |= {f"{node.args[0].value}{suffix}" for suffix in _SUFFIXES[kind]}
    return names


def _exported_series() -> set[str]:
    """What the service, the load generator and the harness (stack control API) export."""
    from helius_reco.metrics import Metrics

    registry = CollectorRegistry()
    Metrics(registry)
    exported = {
        f"{family.name}{suffix}"
        for family in registry.collect()
        for suffix in _SUFFIXES.get(family.type, [""])
    }
    exported |= _declared_metrics(REPO / "loadtests" / "locustfile.py")
    exported |= _declared_metrics(REPO / "chaoshelius" / "stack" / "status.py")
    return exported


_OUR_SERIES = re.compile(r"(?<![\w:])(?:reco_engine|helius_client|helius_stack)_\w+\b(?!:)")


def _queried_text() -> str:
    dashboard = json.loads(DASHBOARD.read_text())
    return RULES.read_text() + "\n".join(checks.dashboard_exprs(dashboard))


def test_metric_names_used_by_rules_and_dashboard_exist() -> None:
    """Every reco_engine_* / helius_client_* / helius_stack_* series the rules and the dashboard
    query is one the service, the load generator or the harness exports (recorded names such as
    `namespace:reco_engine_requests:rate30s` are not exported series: left out)."""
    used = set(_OUR_SERIES.findall(_queried_text()))
    for prefix in ("reco_engine_", "helius_client_", "helius_stack_"):
        assert any(name.startswith(prefix) for name in used), f"no {prefix}* series used"
    assert used <= _exported_series(), used - _exported_series()


@pytest.mark.parametrize(
    "typo",
    [
        ("reco_engine_in_fallback_mode", "reco_engine_fallback_mode"),
        ("helius_client_request_latency_seconds_bucket", "helius_client_latency_seconds_bucket"),
        ("helius_stack_fault_active", "helius_stack_faults_active"),
    ],
)
def test_the_metric_name_check_catches_a_typo(typo: tuple[str, str]) -> None:
    real, wrong = typo
    text = _queried_text()
    assert real in text
    assert set(_OUR_SERIES.findall(text.replace(real, wrong))) - _exported_series() == {wrong}
