"""The control API's contract on the real stack: idempotent undo, 4xx JSON errors for bad
input (never a 500, never a side effect), and Prometheus seeing every pod with its labels.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.stack import StackHandle, wait_for

from chaoshelius.stack import auth
from chaoshelius.topology import EDGE_MLFLOW_RDS, EDGE_RECO_MLFLOW, NAMESPACE, App

pytestmark = pytest.mark.integration


def _snapshot(stack: StackHandle) -> dict[str, Any]:
    status = stack.control.status()
    return {
        "pods": sorted((p["name"], p["state"], p["restarts"]) for p in status["pods"]),
        "faults": status["faults"],
        "drained": status["drained_zones"],
        "modes": {name: proxy["mode"] for name, proxy in status["proxies"].items()},
    }


def test_undo_operations_are_idempotent(stack: StackHandle) -> None:
    healthy = _snapshot(stack)
    # undo with nothing to undo: no error, nothing changes
    assert stack.control.restore(EDGE_RECO_MLFLOW) == []
    assert stack.control.uncordon("zone-b") == []
    assert stack.control.restore_scale(App.RECO) == []
    assert stack.control.remove_fault("path-999999") == []
    assert _snapshot(stack) == healthy

    # undo twice: the first removes the fault, the second is a no-op with the same result
    fault = stack.control.cut_path(EDGE_RECO_MLFLOW, "latency", ttl_seconds=60, latency_ms=50)
    assert _snapshot(stack)["modes"][EDGE_RECO_MLFLOW] == "latency"
    assert [f["id"] for f in stack.control.remove_fault(fault["id"])] == [fault["id"]]
    assert stack.control.remove_fault(fault["id"]) == []
    assert stack.control.restore(EDGE_RECO_MLFLOW) == []
    assert _snapshot(stack) == healthy

    fault = stack.control.cut_path(EDGE_RECO_MLFLOW, "blackhole", ttl_seconds=60)
    assert [f["id"] for f in stack.control.restore(EDGE_RECO_MLFLOW)] == [fault["id"]]
    assert stack.control.restore(EDGE_RECO_MLFLOW) == []
    assert stack.control.remove_fault(fault["id"]) == []
    assert _snapshot(stack) == healthy


def test_injecting_again_replaces_the_fault_on_the_same_target(stack: StackHandle) -> None:
    first = stack.control.cut_path(EDGE_RECO_MLFLOW, "latency", ttl_seconds=60, latency_ms=10)
    second = stack.control.cut_path(EDGE_RECO_MLFLOW, "blackhole", ttl_seconds=30)
    faults = stack.control.faults()
    assert [f["id"] for f in faults] == [second["id"]] != [first["id"]]
    assert faults[0]["params"] == {"mode": "blackhole"}
    assert stack.control.status()["proxies"][EDGE_RECO_MLFLOW]["mode"] == "blackhole"
    stack.control.restore(EDGE_RECO_MLFLOW)


BAD_REQUESTS = [
    # (case, method, path, json body or None, params, expected status, words in the error)
    ("unknown zone drain", "POST", "/zones/zone-x/drain", {"ttl_seconds": 5}, None, 404,
     ["zone-x"]),
    ("unknown zone uncordon", "POST", "/zones/zone-x/uncordon", {}, None, 404, ["zone-x"]),
    ("unknown edge cut", "POST", "/paths/db-cache/faults", {"mode": "blackhole",
     "ttl_seconds": 5}, None, 404, ["db-cache"]),
    ("unknown edge restore", "DELETE", "/paths/db-cache/faults", None, None, 404, ["db-cache"]),
    ("bad mode", "POST", f"/paths/{EDGE_MLFLOW_RDS}/faults", {"mode": "drop",
     "ttl_seconds": 5}, None, 400, ["mode"]),
    ("latency without latency_ms", "POST", f"/paths/{EDGE_MLFLOW_RDS}/faults",
     {"mode": "latency", "ttl_seconds": 5}, None, 400, ["latency_ms"]),
    ("negative latency", "POST", f"/paths/{EDGE_MLFLOW_RDS}/faults",
     {"mode": "latency", "latency_ms": -5, "ttl_seconds": 5}, None, 400, ["latency_ms"]),
    ("fault without ttl", "POST", f"/paths/{EDGE_MLFLOW_RDS}/faults", {"mode": "reset"}, None,
     400, ["ttl_seconds"]),
    ("zero ttl", "POST", "/zones/zone-a/drain", {"ttl_seconds": 0}, None, 400, ["ttl_seconds"]),
    ("ttl over the maximum", "POST", "/zones/zone-a/drain", {"ttl_seconds": 86400}, None, 400,
     ["ttl_seconds"]),
    ("bad selector key", "GET", "/pods", None, {"selector": "color=red"}, 400, ["color"]),
    ("bad selector syntax", "POST", "/pods/kill", {"selector": "app in mlflow"}, None, 400,
     ["app in mlflow"]),
    ("selector matching nothing", "POST", "/pods/kill", {"selector": "app=grafana"}, None, 404,
     ["app=grafana"]),
    ("kill count 0", "POST", "/pods/kill", {"selector": "app=mlflow", "count": 0}, None, 400,
     ["count"]),
    ("unknown app", "POST", "/apps/grafana/scale", {"replicas": 1, "ttl_seconds": 5}, None,
     404, ["grafana"]),
    ("negative replicas", "POST", "/apps/mlflow/scale", {"replicas": -1, "ttl_seconds": 5},
     None, 400, ["replicas"]),
    ("body not JSON", "POST", "/zones/zone-a/drain", "ttl=5", None, 400, ["JSON"]),
    ("body not an object", "POST", "/zones/zone-a/drain", [5], None, 400, []),
    ("unknown field", "POST", "/zones/zone-a/drain", {"ttl_seconds": 5, "zone": "zone-b"}, None,
     400, ["zone"]),
    ("shutdown with a non-empty body", "POST", "/shutdown", {"now": True}, None, 400, ["now"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "body", "params", "expected", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_REQUESTS],
)
def test_bad_input_gets_a_4xx_json_error_and_changes_nothing(
    stack: StackHandle,
    method: str,
    path: str,
    body: Any,
    params: dict[str, str] | None,
    expected: int | None,
    words: list[str],
) -> None:
    before = _snapshot(stack)
    kwargs: dict[str, Any] = {"params": params, "headers": auth.bearer(stack.token)}
    if isinstance(body, str):
        kwargs["content"] = body
        kwargs["headers"]["content-type"] = "application/json"
    elif body is not None:
        kwargs["json"] = body
    response = stack.http.request(method, stack.control.url + path, timeout=10, **kwargs)

    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if expected is not None:
        assert response.status_code == expected, response.text
    error = response.json()
    assert list(error) == ["error"] and error["error"], error
    for word in words:
        assert word in error["error"]
    assert _snapshot(stack) == before


def _up_targets(stack: StackHandle) -> list[dict[str, Any]]:
    response = stack.http.get(
        stack.prometheus_url + "/api/v1/query", params={"query": 'up{job="helius-pods"}'}
    )
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def test_prometheus_scrapes_every_pod_up_with_its_labels(stack: StackHandle) -> None:
    expected = {(pod["name"], pod["app"], pod["zone"], NAMESPACE, "1") for pod in stack.pods()}
    assert len(expected) == 6

    def seen() -> set[tuple[str, str, str, str, str]]:
        return {
            (
                series["metric"].get("pod", ""),
                series["metric"].get("app", ""),
                series["metric"].get("zone", ""),
                series["metric"].get("namespace", ""),
                series["value"][1],
            )
            for series in _up_targets(stack)
        }

    # targets of pods replaced by earlier tests disappear: wait for the exact set
    wait_for(lambda: seen() == expected, 30, "Prometheus: exactly the live pods, all up")
    for series in _up_targets(stack):
        pod = stack.pods(f"pod={series['metric']['pod']}")[0]
        assert series["metric"]["instance"] == f"127.0.0.1:{pod['port']}"

    # the stack's own metrics, scraped too: one ready gauge per pod
    response = stack.http.get(
        stack.prometheus_url + "/api/v1/query", params={"query": "helius_stack_pod_ready"}
    )
    ready = {
        (s["metric"]["pod"], s["metric"]["app"], s["metric"]["zone"], s["value"][1])
        for s in response.json()["data"]["result"]
    }
    assert {(name, app, zone, "1") for name, app, zone, _, _ in expected} <= ready


def test_prometheus_loaded_the_shared_alert_rules(stack: StackHandle) -> None:
    response = stack.http.get(stack.prometheus_url + "/api/v1/rules")
    response.raise_for_status()
    rules = [rule for group in response.json()["data"]["groups"] for rule in group["rules"]]
    alerts = {rule["name"] for rule in rules if rule["type"] == "alerting"}
    assert {"RecoEngineInFallback", "MLflowDown"} <= alerts
    broken = [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] == "err"]
    assert broken == []
