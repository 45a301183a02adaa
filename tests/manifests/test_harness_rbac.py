"""The chaos harness's rights, over the rendered overlays: least privilege, derived from the
package's own names (issue 17, finding 5).

- base renders without the harness (runner, reaper, load generator): it is the opt-in
  Component manifests/components/chaos-harness, which the overlays include explicitly;
- every rule of a harness Role/ClusterRole that patches, updates or deletes Deployments,
  NetworkPolicies or Chaos Mesh NetworkChaos names exactly the objects the drivers touch
  (`resourceNames`), computed from chaoshelius (config defaults, k8s names, topology edges),
  never a hand list: the default-deny and the system's own policies are out of reach;
- the harness's bindings bind only the harness's ServiceAccounts;
- node patches: RBAC cannot restrict fields, so a ValidatingAdmissionPolicy lets the harness's
  ServiceAccounts change only `spec.unschedulable` and `helius.chaos/*` annotations; another
  limits their creates (which RBAC cannot limit by name) to the driver's fault objects. The CEL is
  evaluated here by cel-python (`celpy`, a CEL implementation in Python, not the API server's
  cel-go): the rendered expressions, against node objects before and after the driver's and
  the reaper's patches and hostile ones; a Python mirror of the rule checks the same cases, so
  a celpy quirk cannot make a wrong expression pass alone. What the API server adds (typed
  CEL against the Node schema, matchConditions on request.userInfo) is not run here.
- the reaper's egress goes to the API server's address range only, never 0.0.0.0/0.
"""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import celpy
import pytest
from k8s_paths import OVERLAYS

from chaoshelius.config import HarnessConfig
from chaoshelius.drivers.k8s_names import ANNOT_CORDONED, ANNOT_EXPIRES, UNCORDON_PATCH
from chaoshelius.drivers.kubernetes import (
    LOADGEN_MASTER,
    LOADGEN_WORKER,
    network_chaos_for,
    network_policy_for,
)
from chaoshelius.topology import EDGES, NAMESPACE

Obj = dict[str, Any]

RUNNER = "helius-chaos-runner"
REAPER = "helius-chaos-reaper"
HARNESS_ACCOUNTS = {RUNNER, REAPER}
WRITES = {"patch", "update", "delete", "deletecollection", "*"}


def touched() -> dict[str, set[str]]:
    """The objects the kubernetes driver and the reaper patch or delete, by resource, from the
    package's own names."""
    return {
        "deployments": set(HarnessConfig().kube_deployments.values())
        | {LOADGEN_MASTER, LOADGEN_WORKER},
        "networkpolicies": {
            network_policy_for(e, NAMESPACE, None)["metadata"]["name"] for e in EDGES
        },
        "networkchaos": {
            network_chaos_for(e, NAMESPACE, 100, 60.0)["metadata"]["name"] for e in EDGES
        },
    }


def _harness_roles(objects: list[Obj]) -> list[Obj]:
    return [
        o
        for o in objects
        if o["kind"] in ("Role", "ClusterRole")
        and o["metadata"]["name"].startswith("helius-chaos-")
    ]


def _named(objects: list[Obj], kind: str, name: str) -> Obj:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_base_renders_without_the_harness(rendered: dict[str, list[Obj]]) -> None:
    base = rendered["base"]
    harness = [
        f"{o['kind']}/{o['metadata']['name']}"
        for o in base
        if o["metadata"]["name"].startswith(("helius-chaos-", "loadgen", "chaos-reaper"))
        or (o["metadata"].get("labels") or {}).get("helius.chaos/harness") == "true"
    ]
    assert harness == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlays_include_the_harness(overlay: str, rendered: dict[str, list[Obj]]) -> None:
    names = {(o["kind"], o["metadata"]["name"]) for o in rendered[overlay]}
    for account in HARNESS_ACCOUNTS:
        assert ("ServiceAccount", account) in names
    assert ("Deployment", REAPER) in names and ("Deployment", LOADGEN_WORKER) in names


def resource_name_problems(objects: list[Obj]) -> list[str]:
    """Each harness rule that writes a touched kind must name exactly the touched objects."""
    expected = touched()
    problems = []
    for role in _harness_roles(objects):
        for rule in role.get("rules") or []:
            kinds = set(rule.get("resources", [])) & (set(expected) | {"*"})
            if not kinds or not set(rule.get("verbs", [])) & WRITES:
                continue
            for kind in kinds:
                names = set(rule.get("resourceNames") or [])
                if kind == "*" or names != expected[kind]:
                    problems.append(
                        f"{role['kind']}/{role['metadata']['name']}: {kind} {rule['verbs']} "
                        f"names {sorted(names)}, should be {sorted(expected.get(kind, []))}"
                    )
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_writes_name_exactly_the_objects_the_drivers_touch(
    overlay: str, rendered: dict[str, list[Obj]]
) -> None:
    objects = rendered[overlay]
    assert _harness_roles(objects)
    assert resource_name_problems(objects) == []
    # and each kind the drivers write is granted (the check above is not vacuous)
    for kind in touched():
        assert any(
            kind in r.get("resources", []) and set(r.get("verbs", [])) & WRITES
            for role in _harness_roles(objects)
            for r in role.get("rules") or []
        ), kind


def test_the_resource_name_check_catches_a_wide_rule(rendered: dict[str, list[Obj]]) -> None:
    objects = copy.deepcopy(rendered["kind"])
    role = _named(objects, "Role", RUNNER)
    role["rules"].append({"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"]})
    assert any("deployments" in p for p in resource_name_problems(objects))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_harness_bindings_bind_only_the_harness_accounts(
    overlay: str, rendered: dict[str, list[Obj]]
) -> None:
    objects = rendered[overlay]
    bindings = [
        o
        for o in objects
        if o["kind"] in ("RoleBinding", "ClusterRoleBinding")
        and o["roleRef"]["name"].startswith("helius-chaos-")
    ]
    assert {b["roleRef"]["name"] for b in bindings} == {
        r["metadata"]["name"] for r in _harness_roles(objects)
    }
    for binding in bindings:
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount", binding
            assert subject["name"] in HARNESS_ACCOUNTS, binding
            assert subject.get("namespace", NAMESPACE) == NAMESPACE, binding


# ------------------------------------------------------------------ node admission policy
def _node_policy(objects: list[Obj]) -> tuple[Obj, Obj]:
    policies = [o for o in objects if o["kind"] == "ValidatingAdmissionPolicy"]
    [policy] = [
        p
        for p in policies
        if any(
            "nodes" in r.get("resources", [])
            for r in p["spec"]["matchConstraints"]["resourceRules"]
        )
    ]
    [binding] = [
        o
        for o in objects
        if o["kind"] == "ValidatingAdmissionPolicyBinding"
        and o["spec"]["policyName"] == policy["metadata"]["name"]
    ]
    return policy, binding


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_node_patches_pass_a_validating_admission_policy(
    overlay: str, rendered: dict[str, list[Obj]]
) -> None:
    objects = rendered[overlay]
    policy, binding = _node_policy(objects)
    assert policy["apiVersion"] == binding["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert binding["spec"]["validationActions"] == ["Deny"]
    [rule] = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["nodes"] and "UPDATE" in rule["operations"]
    # it applies to exactly the harness's ServiceAccounts, as rendered (namespace included)
    accounts = {
        f"system:serviceaccount:{o['metadata']['namespace']}:{o['metadata']['name']}"
        for o in objects
        if o["kind"] == "ServiceAccount" and o["metadata"]["name"] in HARNESS_ACCOUNTS
    }
    assert len(accounts) == 2
    [condition] = policy["spec"]["matchConditions"]
    env = celpy.Environment()
    program = env.program(env.compile(condition["expression"]))
    for user, applies in [(a, True) for a in accounts] + [
        ("system:serviceaccount:helius:default", False),
        ("kubernetes-admin", False),
        ("system:node:helius-worker", False),
    ]:
        request = celpy.json_to_cel({"userInfo": {"username": user}})
        assert bool(program.evaluate({"request": request})) is applies, user
    # and every node grant of the harness is covered by it
    for role in _harness_roles(objects):
        for r in role.get("rules") or []:
            if "nodes" in r.get("resources", []) and set(r["verbs"]) & WRITES:
                bound = [
                    s["name"]
                    for b in objects
                    if b["kind"] == "ClusterRoleBinding"
                    and b["roleRef"]["name"] == role["metadata"]["name"]
                    for s in b["subjects"]
                ]
                assert {f"system:serviceaccount:{NAMESPACE}:{n}" for n in bound} <= accounts


def _fault_object_policy(objects: list[Obj]) -> Obj:
    [policy] = [
        o
        for o in objects
        if o["kind"] == "ValidatingAdmissionPolicy"
        and o["metadata"]["name"] == "helius-chaos-fault-objects"
    ]
    assert any(
        o["kind"] == "ValidatingAdmissionPolicyBinding"
        and o["spec"]["policyName"] == policy["metadata"]["name"]
        and o["spec"]["validationActions"] == ["Deny"]
        for o in objects
    )
    return policy


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_harness_creates_only_its_own_fault_objects(
    overlay: str, rendered: dict[str, list[Obj]]
) -> None:
    """RBAC cannot limit a create by name; the admission policy does: exactly the names the
    driver creates (from chaoshelius), for the same ServiceAccounts as the node policy."""
    objects = rendered[overlay]
    policy = _fault_object_policy(objects)
    node_policy, _ = _node_policy(objects)
    assert policy["spec"]["matchConditions"] == node_policy["spec"]["matchConditions"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    covered = {
        (group, resource)
        for rule in policy["spec"]["matchConstraints"]["resourceRules"]
        if rule["operations"] == ["CREATE"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert covered == {("networking.k8s.io", "networkpolicies"), ("chaos-mesh.org", "networkchaos")}
    env = celpy.Environment()
    programs = [env.program(env.compile(v["expression"])) for v in policy["spec"]["validations"]]
    others = {"allow-all", "default-deny-egress", "helius-chaos-x", "mlflow-ingress"}
    for resource, names in touched().items():
        if resource == "deployments":
            continue
        other_kind = next(r for r in touched() if r not in (resource, "deployments"))
        for name in names | others | touched()[other_kind]:
            activation = {
                "request": celpy.json_to_cel({"resource": {"resource": resource}}),
                "object": celpy.json_to_cel({"metadata": {"name": name}}),
            }
            passed = all(bool(p.evaluate(activation)) for p in programs)
            assert passed is (name in names), (resource, name)


NODE: Obj = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {
        "name": "helius-worker",
        "labels": {"topology.kubernetes.io/zone": "zone-a", "kubernetes.io/hostname": "w"},
        "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        "finalizers": [],
    },
    "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"], "providerID": "kind://w"},
}
CORDON = {
    "metadata": {"annotations": {ANNOT_CORDONED: "drain-zone-a", ANNOT_EXPIRES: "4000000000"}},
    "spec": {"unschedulable": True},
}


def merge(target: Any, patch: Any) -> Any:
    """A JSON merge patch (RFC 7396), as the API server applies the driver's node patches."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def mirror(old: Obj, new: Obj) -> bool:
    """The policy's rule in Python: only spec.unschedulable and helius.chaos/* annotations
    may differ between the old and the new node."""

    def rest(node: Obj) -> Obj:
        node = copy.deepcopy(node)
        node.get("spec", {}).pop("unschedulable", None)
        node.pop("status", None)
        annotations = node["metadata"].get("annotations") or {}
        node["metadata"]["annotations"] = {
            k: v for k, v in annotations.items() if not k.startswith("helius.chaos/")
        }
        for volatile in ("resourceVersion", "managedFields", "generation"):
            node["metadata"].pop(volatile, None)
        return node

    return rest(old) == rest(new)


def _cordoned() -> Obj:
    return merge(NODE, CORDON)


CASES: list[tuple[str, Obj, Obj, bool]] = [
    ("cordon", NODE, _cordoned(), True),
    ("uncordon", _cordoned(), merge(_cordoned(), UNCORDON_PATCH), True),
    ("cordon twice", _cordoned(), _cordoned(), True),
    (
        "a label",
        NODE,
        merge(NODE, {"metadata": {"labels": {"topology.kubernetes.io/zone": "zone-b"}}}),
        False,
    ),
    ("a new label", NODE, merge(NODE, {"metadata": {"labels": {"evil": "1"}}}), False),
    ("labels removed", NODE, merge(NODE, {"metadata": {"labels": None}}), False),
    (
        "a taint",
        NODE,
        merge(NODE, {"spec": {"taints": [{"key": "k", "effect": "NoExecute"}]}}),
        False,
    ),
    ("a foreign annotation", NODE, merge(NODE, {"metadata": {"annotations": {"x": "1"}}}), False),
    (
        "a foreign annotation removed",
        NODE,
        merge(NODE, {"metadata": {"annotations": {"node.alpha.kubernetes.io/ttl": None}}}),
        False,
    ),
    (
        "a foreign annotation changed",
        NODE,
        merge(NODE, {"metadata": {"annotations": {"node.alpha.kubernetes.io/ttl": "9"}}}),
        False,
    ),
    ("podCIDR", NODE, merge(NODE, {"spec": {"podCIDR": "10.0.0.0/8"}}), False),
    ("providerID", NODE, merge(NODE, {"spec": {"providerID": "aws://x"}}), False),
    ("a finalizer", NODE, merge(NODE, {"metadata": {"finalizers": ["x"]}}), False),
    (
        "an owner",
        NODE,
        merge(NODE, {"metadata": {"ownerReferences": [{"kind": "X", "name": "y"}]}}),
        False,
    ),
]


@pytest.mark.parametrize(("case", "old", "new", "allowed"), CASES, ids=[c[0] for c in CASES])
def test_the_node_policy_allows_only_cordon_and_harness_annotations(
    case: str, old: Obj, new: Obj, allowed: bool, rendered: dict[str, list[Obj]]
) -> None:
    assert mirror(old, new) is allowed, case
    policy, _ = _node_policy(rendered["kind"])
    env = celpy.Environment()
    activation = {"object": celpy.json_to_cel(new), "oldObject": celpy.json_to_cel(old)}
    failed = [
        v["message"]
        for v in policy["spec"]["validations"]
        if not bool(env.program(env.compile(v["expression"])).evaluate(activation))
    ]
    assert (failed == []) is allowed, (case, failed)


# ------------------------------------------------------------------ the reaper's egress
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_reaper_talks_to_the_api_server_range_only(
    overlay: str, rendered: dict[str, list[Obj]]
) -> None:
    objects = rendered[overlay]
    reaper = _named(objects, "Deployment", REAPER)["spec"]["template"]["metadata"]["labels"]
    policies = [
        o
        for o in objects
        if o["kind"] == "NetworkPolicy"
        and "Egress" in o["spec"].get("policyTypes", [])
        and all(
            reaper.get(k) == v for k, v in o["spec"]["podSelector"].get("matchLabels", {}).items()
        )
        and o["spec"]["podSelector"].get("matchLabels")
    ]
    assert policies
    for policy in policies:
        for egress in policy["spec"].get("egress") or []:
            assert egress.get("to"), policy["metadata"]["name"]  # no "to" is "anywhere"
            for peer in egress["to"]:
                network = ipaddress.ip_network(peer["ipBlock"]["cidr"])
                assert network.prefixlen >= 16, (overlay, policy["metadata"]["name"], str(network))
            assert egress.get("ports"), policy["metadata"]["name"]
