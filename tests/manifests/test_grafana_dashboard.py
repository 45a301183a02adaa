"""The Grafana dashboard (manifests/monitoring/dashboards/helius-resilience.json).

Its conventions (monitoring_checks.dashboard_problems): a `$datasource` variable and no
hard-coded datasource uid, `$__rate_interval` instead of fixed windows, a client latency panel,
the SLOs of the alert rules drawn on the success-ratio and latency panels, fault annotations.
Each convention is shown to fail on a broken copy; every query parses (promtool).
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import monitoring_checks as checks
import pytest
import yaml
from k8s_paths import MANIFESTS

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
