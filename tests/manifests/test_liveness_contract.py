"""The local stack's supervisor probes liveness like the kubelet, with the manifests' values.

`chaoshelius.topology.RECO_LIVENESS` / `MLFLOW_LIVENESS` feed the supervisor; here they are
compared with the livenessProbe of each Deployment in every rendered overlay, so an outage
that outlasts the liveness budget on a cluster outlasts it locally too.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from chaoshelius.topology import MLFLOW_LIVENESS, RECO_LIVENESS, App, Probe

EXPECTED = {App.RECO.value: RECO_LIVENESS, App.MLFLOW.value: MLFLOW_LIVENESS}


def _liveness(objects: list[dict[str, Any]], app: str) -> dict[str, Any]:
    for obj in objects:
        if obj.get("kind") != "Deployment":
            continue
        if obj["spec"]["template"]["metadata"]["labels"].get("app") != app:
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            if "livenessProbe" in container:
                probe: dict[str, Any] = container["livenessProbe"]
                return probe
    raise AssertionError(f"no Deployment of app={app} with a livenessProbe")


@pytest.mark.parametrize("app", sorted(EXPECTED))
def test_the_stack_probes_liveness_as_the_manifests_declare(
    rendered: dict[str, list[dict[str, Any]]], app: str
) -> None:
    expected: Probe = EXPECTED[app]
    for target, objects in rendered.items():
        probe = _liveness(objects, app)
        declared = Probe(
            probe["httpGet"]["path"],
            float(probe.get("periodSeconds", 10)),
            int(probe.get("failureThreshold", 3)),
            float(probe.get("timeoutSeconds", 1)),
        )
        assert declared == expected, f"{target}: {app} liveness {declared} != {expected}"


@pytest.mark.parametrize("profile", [None, "cluster"])
def test_the_recommender_outage_experiments_outlast_its_liveness_budget(
    profile: str | None,
) -> None:
    """mlflow-outage holds MLflow down longer than period x threshold, so a liveness endpoint
    tied to MLflow would get the pods restarted (and pods_survived would see it): with the
    local stack's timing and with the cluster profile's (the hold is a timing key, resolved
    here by Chaos Toolkit's own configuration loading and substitution)."""
    import json

    from chaoslib import merge_vars, substitute
    from chaoslib.configuration import load_configuration
    from k8s_paths import REPO

    experiment = json.loads((REPO / "experiments" / "mlflow-outage.json").read_text())
    var_files = [str(REPO / "experiments" / "profiles" / f"{profile}.json")] if profile else []
    configuration = load_configuration(experiment["configuration"], merge_vars({}, var_files)[0])
    pauses = next(a["pauses"] for a in experiment["method"] if a["name"] == "scale-mlflow-to-zero")
    hold = substitute(pauses, configuration, None)["after"]
    budget = RECO_LIVENESS.period_seconds * RECO_LIVENESS.failure_threshold
    # the first failed probe comes at most one period after the endpoint turns bad
    assert hold >= budget + RECO_LIVENESS.period_seconds, (hold, budget)


# Endpoints that answer from a dependency (a database, the registry): a readiness probe may use
# them (the pod leaves the Service while its dependency is gone), a liveness probe never (a
# restart cannot bring the dependency back, and every replica would be restarted at once).
DEPENDENCY_ENDPOINTS: dict[str, set[str]] = {
    # Grafana's /api/health answers 503 when it cannot reach its database; /healthz does not
    # touch it (pkg/api/http_server.go: healthzHandler, apiHealthHandler)
    App.GRAFANA.value: {"/api/health"},
    # the recommender's and MLflow's readiness endpoints (their liveness is pinned above)
    App.RECO.value: {"/ready"},
    App.MLFLOW.value: {"/api/2.0/mlflow/registered-models/search?max_results=1"},
}


def _probe(objects: list[dict[str, Any]], app: str, kind: str) -> dict[str, Any]:
    for obj in objects:
        if obj.get("kind") != "Deployment":
            continue
        if obj["spec"]["template"]["metadata"]["labels"].get("app") != app:
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            if kind in container:
                probe: dict[str, Any] = container[kind]
                return probe
    raise AssertionError(f"no Deployment of app={app} with a {kind}")


def liveness_problems(objects: list[dict[str, Any]]) -> list[str]:
    """Every app's liveness probe that asks a dependency (and Grafana's readiness that does
    not: it must keep taking a replica without its database out of the Service)."""
    problems = []
    for app, endpoints in sorted(DEPENDENCY_ENDPOINTS.items()):
        path = (_probe(objects, app, "livenessProbe").get("httpGet") or {}).get("path")
        if path in endpoints:
            problems.append(f"{app}: livenessProbe {path} depends on a dependency")
    grafana_ready = _probe(objects, App.GRAFANA.value, "readinessProbe")
    if (grafana_ready.get("httpGet") or {}).get("path") != "/api/health":
        problems.append("grafana: readinessProbe must stay /api/health (it checks the database)")
    return problems


def test_no_liveness_probe_depends_on_a_dependency(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Grafana included: its liveness was /api/health, which fails when its database does."""
    for target, objects in rendered.items():
        assert liveness_problems(objects) == [], target
    grafana = _probe(rendered["kind"], App.GRAFANA.value, "livenessProbe")
    assert grafana["httpGet"] == {"path": "/healthz", "port": "http"}


def test_the_liveness_check_can_fail(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Grafana's liveness on /api/health (as it was) is reported."""
    objects = copy.deepcopy(rendered["kind"])
    _probe(objects, App.GRAFANA.value, "livenessProbe")["httpGet"]["path"] = "/api/health"
    _probe(objects, App.GRAFANA.value, "readinessProbe")["httpGet"]["path"] = "/healthz"
    assert liveness_problems(objects) == [
        "grafana: livenessProbe /api/health depends on a dependency",
        "grafana: readinessProbe must stay /api/health (it checks the database)",
    ]
