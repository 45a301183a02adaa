"""The Grafana dashboard (manifests/monitoring/dashboards/helius-resilience.json).

Its conventions (monitoring_checks.dashboard_problems): a `$datasource` variable and no
hard-coded datasource uid, `$__rate_interval` instead of fixed windows, a client latency panel,
the SLOs of the alert rules drawn on the success-ratio and latency panels, fault annotations.
Each convention is shown to fail on a broken copy. Every query parses (promtool), and returns
data on series labelled as the scrape labels them (`promtool test rules`, with the alert rules
loaded so `ALERTS` exists): a panel that would stay empty in Grafana fails here.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import monitoring_checks as checks
import pytest
import yaml
from k8s_paths import MANIFESTS, REPO

MONITORING = MANIFESTS / "monitoring"
RULES = MONITORING / "rules" / "helius-alerts.yml"
DASHBOARD = MONITORING / "dashboards" / "helius-resilience.json"
DATASOURCES = MONITORING / "grafana" / "datasources.yaml"

Dashboard = dict[str, Any]


def _dashboard() -> Dashboard:
    dashboard: Dashboard = json.loads(DASHBOARD.read_text())
    return dashboard


def _provisioned() -> dict[str, Any]:
    datasource: dict[str, Any] = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]
    return datasource


def _problems(dashboard: Dashboard) -> list[str]:
    """The conventions, with the SLOs read from the alert rules (so the lines and the alerts
    cannot disagree): success >= 1 - RecoEngineHighErrorRatio's budget, p99 <=
    RecoEngineLatencySLO's threshold."""
    rules = yaml.safe_load(RULES.read_text())
    success = round(1 - checks.alert_threshold(rules, "RecoEngineHighErrorRatio"), 6)
    latency = checks.alert_threshold(rules, "RecoEngineLatencySLO")
    assert (success, latency) == (0.99, 0.25)  # the SLOs the README and the runbooks state
    return checks.dashboard_problems(dashboard, _provisioned()["uid"], success, latency)


def test_the_provisioned_datasource_is_the_default_prometheus() -> None:
    datasource = _provisioned()
    assert datasource["type"] == "prometheus" and datasource["isDefault"] is True
    assert datasource["url"] == "http://prometheus:9090"


def test_dashboard_follows_the_conventions() -> None:
    assert _problems(_dashboard()) == []


def _panel(dashboard: Dashboard, title: str) -> Dashboard:
    return next(p for p in dashboard["panels"] if p["title"] == title)


def _hard_coded_uid(d: Dashboard) -> None:
    _panel(d, "Pods in fallback")["targets"][0]["datasource"] = {
        "type": "prometheus",
        "uid": "prometheus",
    }


def _no_datasource_variable(d: Dashboard) -> None:
    d["templating"]["list"] = [v for v in d["templating"]["list"] if v["type"] != "datasource"]


def _variable_defaults_elsewhere(d: Dashboard) -> None:
    d["templating"]["list"][0]["current"]["value"] = "P1809F7CD0C75ACF3"


def _fixed_window(d: Dashboard) -> None:
    target = _panel(d, "Request rate by status (server side)")["targets"][0]
    target["expr"] = target["expr"].replace("[$__rate_interval]", "[30s]")


def _fixed_window_in_annotation(d: Dashboard) -> None:
    d["annotations"]["list"][0]["expr"] = "max_over_time(helius_stack_fault_active[1m]) == 1"


def _no_client_p95(d: Dashboard) -> None:
    panel = _panel(d, "Latency quantiles (clients)")
    panel["targets"] = [t for t in panel["targets"] if "0.95" not in t["expr"]]


def _latency_slo_not_drawn(d: Dashboard) -> None:
    custom = _panel(d, "Latency quantiles (clients)")["fieldConfig"]["defaults"]["custom"]
    custom["thresholdsStyle"]["mode"] = "off"


def _latency_slo_moved(d: Dashboard) -> None:
    steps = _panel(d, "Latency quantiles (server side)")["fieldConfig"]["defaults"]["thresholds"]
    steps["steps"][1]["value"] = 0.5


def _success_slo_moved(d: Dashboard) -> None:
    steps = _panel(d, "Success ratio")["fieldConfig"]["defaults"]["thresholds"]
    steps["steps"][1]["value"] = 0.95


def _no_fault_annotation(d: Dashboard) -> None:
    d["annotations"]["list"] = [
        a for a in d["annotations"]["list"] if checks.FAULT_METRIC not in a["expr"]
    ]


def _alerts_annotation_off(d: Dashboard) -> None:
    for annotation in d["annotations"]["list"]:
        if "ALERTS" in annotation["expr"]:
            annotation["enable"] = False


BROKEN: dict[str, Callable[[Dashboard], None]] = {
    "hard-coded datasource uid": _hard_coded_uid,
    "no datasource variable": _no_datasource_variable,
    "variable defaults to another datasource": _variable_defaults_elsewhere,
    "fixed [30s] window": _fixed_window,
    "fixed window in an annotation": _fixed_window_in_annotation,
    "client latency without p95": _no_client_p95,
    "latency SLO not drawn": _latency_slo_not_drawn,
    "latency SLO line at 500 ms": _latency_slo_moved,
    "success SLO line at 95 %": _success_slo_moved,
    "no fault annotation": _no_fault_annotation,
    "ALERTS annotation disabled": _alerts_annotation_off,
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_the_dashboard_check_catches(broken: str) -> None:
    dashboard = copy.deepcopy(_dashboard())
    BROKEN[broken](dashboard)
    assert _problems(dashboard)


def test_dashboard_queries_parse(promtool: str, tmp_path: Path) -> None:
    """Each query, variables substituted, as a recording rule for `promtool check rules`."""
    exprs = [
        e.replace("$namespace", ".+").replace("$__rate_interval", "1m")
        for e in checks.dashboard_exprs(_dashboard())
        if not e.startswith("label_values(")
    ]
    assert len(exprs) > 10
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


# Series shaped like what the exporters publish, with the labels the scrape gives (app, pod,
# zone, namespace; the stack's and the load generator's as the local stack labels them).
_POD = 'namespace="helius",app="helius-reco",pod="helius-reco-aaaaa",zone="zone-a"'
_LOADGEN = 'namespace="helius",app="loadgen",pod="loadgen"'
_REQUESTS = f'reco_engine_requests_total{{{_POD},method="POST",route="/predict"'
_LATENCY = f'reco_engine_requests_latency_seconds_bucket{{{_POD},route="/predict"'
_CLIENT = f'helius_client_requests_total{{{_LOADGEN},name="/predict"'
_CLIENT_LATENCY = f'helius_client_request_latency_seconds_bucket{{{_LOADGEN},name="/predict"'
_SERIES = {
    f'{_REQUESTS},status="200"}}': "0+100x40",
    f'{_REQUESTS},status="503"}}': "0+5x40",
    f'reco_engine_requests_total{{{_POD},route="/ready",method="GET",status="200"}}': "0+1x40",
    f'{_LATENCY},le="0.1"}}': "0+90x40",
    f'{_LATENCY},le="0.5"}}': "0+105x40",
    f'{_LATENCY},le="+Inf"}}': "0+105x40",
    f"reco_engine_requests_in_flight{{{_POD}}}": "3x40",
    f"reco_engine_in_fallback_mode{{{_POD}}}": "0x40",
    f'reco_engine_model_info{{{_POD},version="3",source="registry"}}': "1x40",
    f'reco_engine_refresh_failures_total{{{_POD},reason="unavailable"}}': "0+1x40",
    f'reco_engine_refresh_failures_total{{{_POD},reason="disabled"}}': "0x40",
    f"up{{{_POD}}}": "1x40",
    'up{namespace="helius",app="mlflow",pod="mlflow-aaaaa",zone="zone-a"}': "1x40",
    f'{_CLIENT},outcome="success",reason="ok"}}': "0+90x40",
    f'{_CLIENT},outcome="failure",reason="timeout"}}': "0+1x40",
    f'{_CLIENT_LATENCY},le="0.1"}}': "0+80x40",
    f'{_CLIENT_LATENCY},le="0.5"}}': "0+91x40",
    f'{_CLIENT_LATENCY},le="+Inf"}}': "0+91x40",
    'helius_stack_fault_active{namespace="helius",kind="scale",target="mlflow"}': "0x10 1x30",
}


def _data_test(tmp_path: Path, exprs: list[str]) -> Path:
    """A `promtool test rules` file: the alert rules (so ALERTS exists) over `_SERIES`, and
    each expression must return at least one series at 50 s."""
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "2s",
        "tests": [
            {
                "interval": "2s",
                "input_series": [{"series": s, "values": v} for s, v in _SERIES.items()],
                "promql_expr_test": [
                    {
                        "expr": f"count({e}) > bool 0",
                        "eval_time": "50s",
                        "exp_samples": [{"labels": "{}", "value": 1}],
                    }
                    for e in exprs
                ],
            }
        ],
    }
    path = tmp_path / "dashboard-data.test.yml"
    path.write_text(yaml.safe_dump(test))
    return path


def _substituted(dashboard: Dashboard) -> list[str]:
    """The queries as Grafana sends them for namespace `helius`."""
    return [
        e.replace("$namespace", "helius").replace("$__rate_interval", "1m")
        for e in checks.dashboard_exprs(dashboard)
        if not e.startswith("label_values(")
    ]


def test_every_dashboard_query_returns_data(promtool: str, tmp_path: Path) -> None:
    """On series labelled as the scrape labels them, every panel and annotation query returns
    something: a wrong label name or value (an empty panel in Grafana) fails here."""
    path = _data_test(tmp_path, _substituted(_dashboard()))
    done = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    "typo",
    [
        ('name="/predict"', 'name="predict"'),  # client latency panel
        ("helius_stack_fault_active{", 'helius_stack_fault_active{app=~".+",'),  # no app label
        ('outcome="success"', 'outcome="ok"'),  # success ratio panel
    ],
)
def test_the_data_check_catches_an_empty_query(
    typo: tuple[str, str], promtool: str, tmp_path: Path
) -> None:
    real, wrong = typo
    text = DASHBOARD.read_text()
    assert real.replace('"', '\\"') in text
    dashboard = json.loads(text.replace(real.replace('"', '\\"'), wrong.replace('"', '\\"')))
    path = _data_test(tmp_path, _substituted(dashboard))
    done = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0


def _runbook_panel_titles() -> dict[str, list[str]]:
    """Page -> the dashboard panels its header table names (`*title*` in its last column)."""
    titles = {}
    for page in sorted((REPO / checks.RUNBOOK_DIR).glob("*.md")):
        table = [line for line in page.read_text().splitlines() if line.startswith("| ")]
        if page.stem != "README":
            titles[page.stem] = re.findall(r"\*([^*]+)\*", table[1].rsplit("|", 2)[-2])
    return titles


def test_runbooks_name_panels_that_exist() -> None:
    existing = {p["title"] for p in _dashboard()["panels"]}
    named = _runbook_panel_titles()
    assert named and all(named.values()), named
    missing = {page: set(t) - existing for page, t in named.items() if set(t) - existing}
    assert not missing, missing
    renamed = {t.replace("Success ratio", "Success") for t in existing}
    assert any(set(t) - renamed for t in named.values())  # the check sees a renamed panel
