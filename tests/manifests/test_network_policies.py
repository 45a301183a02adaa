"""The NetworkPolicies allow exactly the system's paths, and the driver's cuts really cut.

Evaluated offline (netpol.py) on the rendered overlays, with the chaos driver's own cut policy
(`chaoshelius.drivers.kubernetes.network_policy_for`): every needed path is open before a
cut, the cut closes its edge and nothing else, and paths nobody needs stay closed. Broken
variants of the policies show that each of these checks can fail.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from k8s_checks import WORKLOAD_KINDS
from netpol import Endpoint, allowed, external, pod

from chaoshelius.drivers.kubernetes import network_policy_for
from chaoshelius.topology import EDGE_MLFLOW_RDS, EDGE_RECO_MLFLOW, EDGES, NAMESPACE

Obj = dict[str, Any]
Flow = tuple[str, str, int, str]  # source, destination, port, protocol

# endpoints that no manifest of ours defines
KUBE_DNS = pod("kube-dns", "kube-system", **{"k8s-app": "kube-dns"})
EXTERNAL = {
    "client": external("client", "203.0.113.10"),  # a user / port-forward from outside
    "apiserver": external("apiserver", "172.18.0.2"),  # the kube API behind its Service
    "apiserver-eks": external("apiserver-eks", "10.0.0.10"),  # an EKS control-plane ENI
    "rds": external("rds", "10.0.64.10"),  # inside the aws overlay's RDS subnet CIDR
    "s3": external("s3", "52.216.0.1"),
}

COMMON_PATHS: list[Flow] = [
    ("helius-reco", "mlflow", 5000, "TCP"),
    ("model-bootstrap", "mlflow", 5000, "TCP"),
    ("grafana", "prometheus", 9090, "TCP"),
    ("prometheus", "helius-reco", 8080, "TCP"),
    ("prometheus", "mlflow", 5000, "TCP"),
    ("prometheus", "grafana", 3000, "TCP"),
    ("prometheus", "prometheus", 9090, "TCP"),
    ("prometheus", "loadgen-worker", 8089, "TCP"),
    ("prometheus", "apiserver", 6443, "TCP"),
    ("loadgen-worker", "helius-reco", 8080, "TCP"),
    ("loadgen-worker", "loadgen-master", 5557, "TCP"),
    ("client", "helius-reco", 8080, "TCP"),
    ("client", "grafana", 3000, "TCP"),
    ("client", "prometheus", 9090, "TCP"),
]
PATHS: dict[str, list[Flow]] = {
    "kind": COMMON_PATHS
    + [
        ("mlflow", "postgres", 5432, "TCP"),
        ("grafana", "postgres", 5432, "TCP"),
        ("mlflow", "minio", 9000, "TCP"),
        ("minio-bucket", "minio", 9000, "TCP"),
        ("chaos-reaper", "apiserver", 6443, "TCP"),
    ],
    "aws": COMMON_PATHS
    + [
        ("mlflow", "rds", 5432, "TCP"),
        ("grafana", "rds", 5432, "TCP"),
        ("mlflow", "s3", 443, "TCP"),
        ("chaos-reaper", "apiserver-eks", 443, "TCP"),
    ],
}
COMMON_CLOSED: list[Flow] = [
    ("grafana", "mlflow", 5000, "TCP"),
    ("loadgen-worker", "mlflow", 5000, "TCP"),
    ("loadgen-master", "mlflow", 5000, "TCP"),
    ("client", "loadgen-master", 5557, "TCP"),
    ("helius-reco", "loadgen-master", 5557, "TCP"),
    ("chaos-reaper", "mlflow", 5000, "TCP"),
    ("chaos-reaper", "helius-reco", 8080, "TCP"),
    ("chaos-reaper", "s3", 443, "TCP"),  # the API server's range only, not 0.0.0.0/0
    ("client", "mlflow", 5000, "TCP"),
    ("model-bootstrap", "helius-reco", 8080, "TCP"),
    ("grafana", "s3", 443, "TCP"),
    ("model-bootstrap", "s3", 443, "TCP"),
]
CLOSED: dict[str, list[Flow]] = {
    "kind": COMMON_CLOSED
    + [
        ("helius-reco", "postgres", 5432, "TCP"),
        ("model-bootstrap", "postgres", 5432, "TCP"),
        ("client", "postgres", 5432, "TCP"),
        ("helius-reco", "minio", 9000, "TCP"),
        ("client", "minio", 9000, "TCP"),
        ("postgres", "s3", 443, "TCP"),
        ("minio", "s3", 443, "TCP"),
    ],
    "aws": COMMON_CLOSED + [("model-bootstrap", "rds", 5432, "TCP")],
}
# the path each edge of topology.EDGES stands for, per overlay
EDGE_PATHS: dict[str, dict[str, Flow]] = {
    EDGE_MLFLOW_RDS: {
        "kind": ("mlflow", "postgres", 5432, "TCP"),
        "aws": ("mlflow", "rds", 5432, "TCP"),
    },
    EDGE_RECO_MLFLOW: {
        "kind": ("helius-reco", "mlflow", 5000, "TCP"),
        "aws": ("helius-reco", "mlflow", 5000, "TCP"),
    },
}


def endpoints(objects: list[Obj]) -> dict[str, Endpoint]:
    """One pod per workload (by its `app` label, and role for the load generator's master and
    workers), plus the endpoints no manifest defines."""
    pods = {
        _endpoint_name(o["spec"]["template"]["metadata"]["labels"]): Endpoint(
            o["metadata"]["name"],
            o["metadata"]["namespace"],
            o["spec"]["template"]["metadata"]["labels"],
        )
        for o in objects
        if o["kind"] in WORKLOAD_KINDS
    }
    return pods | {"kube-dns": KUBE_DNS} | EXTERNAL


def _endpoint_name(labels: dict[str, str]) -> str:
    role = labels.get("helius.chaos/loadgen-role")
    return f"{labels['app']}-{role}" if role else labels["app"]


def policies_of(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if o["kind"] == "NetworkPolicy"]


def rds_cidr(objects: list[Obj]) -> str:
    """The RDS CIDR the aws overlay writes into Grafana's database egress."""
    policy = next(p for p in policies_of(objects) if p["metadata"]["name"] == "grafana-egress-db")
    cidr: str = policy["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"]
    return cidr


def path_problems(
    policies: list[Obj], where: dict[str, Endpoint], opened: list[Flow], closed: list[Flow]
) -> list[str]:
    problems = []
    for src, dst, port, proto in opened:
        if not allowed(policies, where[src], where[dst], port, proto):
            problems.append(f"{src} -> {dst}:{port}/{proto} is closed, should be open")
    for src, dst, port, proto in closed:
        if allowed(policies, where[src], where[dst], port, proto):
            problems.append(f"{src} -> {dst}:{port}/{proto} is open, should be closed")
    return problems


def dns_paths(where: dict[str, Endpoint]) -> list[Flow]:
    return [
        (name, "kube-dns", 53, proto)
        for name, e in where.items()
        if e.namespace == NAMESPACE
        for proto in ("UDP", "TCP")
    ]


def cut_problems(
    policies: list[Obj], where: dict[str, Endpoint], target: str, edge: str, cidr: str | None
) -> list[str]:
    """With the driver's cut in place: the edge is closed, every other path stays as it was."""
    cut = network_policy_for(edge, NAMESPACE, cidr)
    during = [*policies, cut]
    edge_path = EDGE_PATHS[edge][target]
    others = [f for f in PATHS[target] + dns_paths(where) if f != edge_path]
    return path_problems(during, where, others, [edge_path, *CLOSED[target]])


@pytest.mark.parametrize("target", sorted(PATHS))
def test_needed_paths_open_and_others_closed(target: str, rendered: dict[str, list[Obj]]) -> None:
    where = endpoints(rendered[target])
    policies = policies_of(rendered[target])
    opened = PATHS[target] + dns_paths(where)
    assert path_problems(policies, where, opened, CLOSED[target]) == []


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("target", sorted(PATHS))
def test_driver_cut_closes_its_edge_and_nothing_else(
    target: str, edge: str, rendered: dict[str, list[Obj]]
) -> None:
    objects = rendered[target]
    cidr = rds_cidr(objects) if target == "aws" else None
    assert cut_problems(policies_of(objects), endpoints(objects), target, edge, cidr) == []


def test_aws_cut_without_the_rds_cidr_also_cuts_s3(rendered: dict[str, list[Obj]]) -> None:
    """Without `kube_rds_cidr` the mlflow-rds policy allows pods only: RDS and S3 both go."""
    where = endpoints(rendered["aws"])
    during = [*policies_of(rendered["aws"]), network_policy_for(EDGE_MLFLOW_RDS, NAMESPACE, None)]
    assert not allowed(during, where["mlflow"], where["rds"], 5432)
    assert not allowed(during, where["mlflow"], where["s3"], 443)
    assert allowed(during, where["mlflow"], where["kube-dns"], 53, "UDP")


def test_aws_cut_with_every_rds_subnet_closes_each_and_keeps_s3(
    rendered: dict[str, list[Obj]],
) -> None:
    """An RDS subnet group spans two zones or more (kube_rds_cidr is a list): the cut closes
    MLflow -> RDS in each subnet, and MLflow still reaches S3 and DNS."""
    where = endpoints(rendered["aws"])
    rds_b = external("rds-b", "10.0.80.10")  # the subnet group's second zone
    cut = network_policy_for(
        EDGE_MLFLOW_RDS, NAMESPACE, [rds_cidr(rendered["aws"]), "10.0.80.0/20"]
    )
    before = policies_of(rendered["aws"])
    assert allowed(before, where["mlflow"], rds_b, 5432)
    during = [*before, cut]
    assert not allowed(during, where["mlflow"], where["rds"], 5432)
    assert not allowed(during, where["mlflow"], rds_b, 5432)
    assert allowed(during, where["mlflow"], where["s3"], 443)
    assert allowed(during, where["mlflow"], where["kube-dns"], 53, "UDP")


# ------------------------------------------------------------------ the checks can fail
def _policy(objects: list[Obj], name: str) -> Obj:
    return next(p for p in policies_of(objects) if p["metadata"]["name"] == name)


def _grant_mlflow_egress_to_postgres(objects: list[Obj]) -> None:
    objects.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "mlflow-egress-db", "namespace": NAMESPACE},
            "spec": {
                "podSelector": {"matchLabels": {"app": "mlflow"}},
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "postgres"}}}]}],
            },
        }
    )


BREAKAGES: dict[str, tuple[Callable[[list[Obj]], None], str, str]] = {
    # (how to break the kind overlay, which check, the problem it must report)
    "DNS egress policy selecting every pod isolates MLflow": (
        lambda o: _policy(o, "allow-dns-egress")["spec"].update(podSelector={}),
        "paths",
        "mlflow -> postgres:5432/TCP is closed",
    ),
    "MLflow ingress open to everyone": (
        lambda o: _policy(o, "mlflow-ingress")["spec"]["ingress"][0].pop("from"),
        "paths",
        "client -> mlflow:5000/TCP is open",
    ),
    "DNS egress rule open to any destination and port": (
        lambda o: _policy(o, "allow-dns-egress")["spec"].update(egress=[{}]),
        "paths",
        "grafana -> s3:443/TCP is open",
    ),
    "a separate grant of MLflow -> PostgreSQL survives the cut": (
        _grant_mlflow_egress_to_postgres,
        "cut",
        "mlflow -> postgres:5432/TCP is open, should be closed",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_policy_set_is_caught(breakage: str, rendered: dict[str, list[Obj]]) -> None:
    objects = copy.deepcopy(rendered["kind"])
    breaker, check, expected = BREAKAGES[breakage]
    breaker(objects)
    where, policies = endpoints(objects), policies_of(objects)
    if check == "paths":
        problems = path_problems(policies, where, PATHS["kind"] + dns_paths(where), CLOSED["kind"])
    else:
        problems = cut_problems(policies, where, "kind", EDGE_MLFLOW_RDS, None)
    assert any(expected in p for p in problems), problems
