"""Policy checks over rendered Kubernetes objects: each returns the violations it finds.

Pure functions over plain dicts, so the tests can run them on the real manifests (no
violation allowed) and on deliberately broken copies (the violation must be reported).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from chaoshelius.drivers.k8s_names import HARNESS_LABEL
from chaoshelius.topology import ZONE_LABEL

Obj = dict[str, Any]

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
MIN_REPLICAS = 3
SECRET_NAME = re.compile(r"(PASS|PASSWORD|SECRET|TOKEN|API_?KEY|ACCESS_KEY|CREDENTIAL)", re.I)
URI_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:([^@\s]+)@")
INTERPOLATION = re.compile(r"^\$\([A-Z_][A-Z0-9_]*\)$")


def name_of(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def pod_spec(obj: Obj) -> Obj:
    spec: Obj = obj["spec"]["template"]["spec"]
    return spec


def containers(obj: Obj) -> Iterator[Obj]:
    spec = pod_spec(obj)
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels + matchExpressions) against a label set."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# ------------------------------------------------------------------------------ per workload
def check_image_tags(obj: Obj) -> list[str]:
    problems = []
    for c in containers(obj):
        image: str = c.get("image", "")
        last = image.rsplit("/", 1)[-1]
        if "@sha256:" in image:
            continue
        if ":" not in last:
            problems.append(f"{name_of(obj)}: {c['name']} image {image!r} has no tag")
        elif last.rsplit(":", 1)[1] == "latest":
            problems.append(f"{name_of(obj)}: {c['name']} image {image!r} uses `latest`")
    return problems


def check_probes(obj: Obj) -> list[str]:
    spec = pod_spec(obj)
    return [
        f"{name_of(obj)}: container {c['name']} has no {probe}"
        for c in spec.get("containers", [])
        for probe in ("readinessProbe", "livenessProbe")
        if probe not in c
    ]


def check_resources(obj: Obj) -> list[str]:
    problems = []
    for c in containers(obj):
        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            for what in ("cpu", "memory"):
                if what not in (res.get(kind) or {}):
                    problems.append(f"{name_of(obj)}: {c['name']} has no {kind}.{what}")
    return problems


def check_security_context(obj: Obj) -> list[str]:
    problems = []
    pod_sc = pod_spec(obj).get("securityContext") or {}
    for c in containers(obj):
        sc = c.get("securityContext") or {}
        where = f"{name_of(obj)}: {c['name']}"
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        if non_root is not True:
            problems.append(f"{where} does not set runAsNonRoot: true")
        if uid == 0:
            problems.append(f"{where} runs as uid 0")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where} does not set allowPrivilegeEscalation: false")
        if sc.get("privileged"):
            problems.append(f"{where} is privileged")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{where} does not drop ALL capabilities")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where} has a writable root filesystem")
    return problems


def _secret_mounts(obj: Obj, container: Obj) -> list[str]:
    """Mount paths of the container's Secret volumes."""
    secret_volumes = {v["name"] for v in pod_spec(obj).get("volumes") or [] if "secret" in v}
    return [
        m["mountPath"].rstrip("/") + "/"
        for m in container.get("volumeMounts") or []
        if m["name"] in secret_volumes
    ]


def check_no_literal_secrets(obj: Obj) -> list[str]:
    """Secret-looking env vars come from secretKeyRef (or, named *_FILE, name a file in a
    mounted Secret volume); no URI carries a literal password."""
    problems = []
    for c in containers(obj):
        for env in c.get("env") or []:
            value = env.get("value")
            where = f"{name_of(obj)}: {c['name']} env {env['name']}"
            if value is None:
                continue
            if env["name"].endswith("_FILE"):
                if SECRET_NAME.search(env["name"]) and not any(
                    value.startswith(m) for m in _secret_mounts(obj, c)
                ):
                    problems.append(f"{where} names a file outside any Secret volume")
                continue
            if SECRET_NAME.search(env["name"]) and not INTERPOLATION.match(value):
                problems.append(f"{where} has a literal value (use secretKeyRef)")
            for password in URI_WITH_PASSWORD.findall(value):
                if not INTERPOLATION.match(password):
                    problems.append(f"{where} has a URI with a literal password")
        for arg in (c.get("args") or []) + (c.get("command") or []):
            for password in URI_WITH_PASSWORD.findall(str(arg)):
                if not INTERPOLATION.match(password):
                    problems.append(f"{name_of(obj)}: {c['name']} passes a literal password")
    return problems


def check_zone_spread(obj: Obj) -> list[str]:
    """Spread over ZONE_LABEL (hard, maxSkew 1) or required anti-affinity on ZONE_LABEL."""
    spec = pod_spec(obj)
    labels = obj["spec"]["template"]["metadata"].get("labels", {})
    for tsc in spec.get("topologySpreadConstraints") or []:
        if (
            tsc.get("topologyKey") == ZONE_LABEL
            and tsc.get("maxSkew") == 1
            and tsc.get("whenUnsatisfiable") == "DoNotSchedule"
            and selects(tsc.get("labelSelector") or {}, labels)
        ):
            return []
    anti = (spec.get("affinity") or {}).get("podAntiAffinity") or {}
    for term in anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []:
        if term.get("topologyKey") == ZONE_LABEL and selects(term["labelSelector"], labels):
            return []
    return [f"{name_of(obj)}: no zone spread / anti-affinity on {ZONE_LABEL}"]


def check_replicas(obj: Obj) -> list[str]:
    replicas = obj["spec"].get("replicas", 1)
    if replicas < MIN_REPLICAS:
        return [f"{name_of(obj)}: {replicas} replicas, at least {MIN_REPLICAS} required"]
    return []


def _pdb_allows(pdb: Obj, replicas: int) -> tuple[int, int]:
    """(evictions allowed with every replica ready, replicas the PDB keeps running)."""
    spec = pdb["spec"]

    def absolute(value: int | str) -> int:
        if isinstance(value, str) and value.endswith("%"):
            return -(-replicas * int(value[:-1]) // 100)  # Kubernetes rounds up
        return int(value)

    if "maxUnavailable" in spec:
        allowed = absolute(spec["maxUnavailable"])
        return allowed, replicas - allowed
    if "minAvailable" in spec:
        kept = absolute(spec["minAvailable"])
        return replicas - kept, kept
    return replicas, 0


def check_pdb(obj: Obj, pdbs: list[Obj]) -> list[str]:
    """Exactly one PDB covers the pods; it allows one eviction and keeps at least one pod."""
    labels = obj["spec"]["template"]["metadata"].get("labels", {})
    ns = obj["metadata"].get("namespace")
    covering = [
        p
        for p in pdbs
        if p["metadata"].get("namespace") == ns and selects(p["spec"]["selector"], labels)
    ]
    if len(covering) != 1:
        return [f"{name_of(obj)}: {len(covering)} PodDisruptionBudgets select it, need 1"]
    replicas = obj["spec"].get("replicas", 1)
    evictions, kept = _pdb_allows(covering[0], replicas)
    problems = []
    if evictions < 1:
        problems.append(f"{name_of(obj)}: its PDB leaves no room for an eviction (drain blocks)")
    if kept < 1:
        problems.append(f"{name_of(obj)}: its PDB lets every replica go at once")
    return problems


def check_all(objects: list[Obj]) -> list[str]:
    """Every policy over a rendered overlay."""
    problems: list[str] = []
    pdbs = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    for obj in objects:
        if obj["kind"] == "Secret" and (obj.get("data") or obj.get("stringData")):
            problems.append(f"{name_of(obj)}: literal Secret in the manifests")
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        for check in (
            check_image_tags,
            check_resources,
            check_security_context,
            check_no_literal_secrets,
        ):
            problems += check(obj)
        if obj["kind"] in ("Deployment", "StatefulSet"):
            problems += check_probes(obj)
        if obj["kind"] == "Deployment" and not is_harness(obj):
            problems += check_replicas(obj) + check_zone_spread(obj) + check_pdb(obj, pdbs)
    return problems


def is_harness(obj: Obj) -> bool:
    """A workload of the chaos harness (load generator, reaper), not of the system under test:
    labelled so on the object and its pods. The HA policies do not apply to it (a Locust
    master is one process; a Deployment restarts the reaper), everything else does."""
    labels = obj["spec"]["template"]["metadata"].get("labels", {})
    return bool(
        obj["metadata"].get("labels", {}).get(HARNESS_LABEL) == "true"
        and labels.get(HARNESS_LABEL) == "true"
    )
