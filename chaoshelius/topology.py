"""Names shared by the manifests, the local stack, the drivers and the experiments.

One place: the Kubernetes manifests (checked by tests/manifests), the local stack's pods and
Prometheus labels, and the chaos drivers all read these, so a selector cannot drift.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, NamedTuple

NAMESPACE: Final = "helius"
APP_LABEL: Final = "app"
ZONE_LABEL: Final = "topology.kubernetes.io/zone"
ZONES: Final = ("zone-a", "zone-b", "zone-c")


class App(StrEnum):
    """Values of the `app` label (pods, Prometheus targets, kubernetes selectors)."""

    RECO = "helius-reco"
    MLFLOW = "mlflow"
    GRAFANA = "grafana"
    PROMETHEUS = "prometheus"
    POSTGRES = "postgres"
    LOADGEN = "loadgen"


RECO_SERVICE: Final = "helius-reco-service"  # Kubernetes Service name, port 80
MLFLOW_SERVICE: Final = "mlflow"  # Kubernetes Service name, port 5000
MLFLOW_DB_SECRET: Final = "mlflow-db-creds"  # noqa: S105  a Secret's name (keys DB_USER / DB_PASS)
MODEL_NAME: Final = "reco"
MODEL_ALIAS: Final = "champion"

# Dependency edges a fault can cut (local: a path proxy; kubernetes: a NetworkPolicy).
EDGE_MLFLOW_RDS: Final = "mlflow-rds"
EDGE_RECO_MLFLOW: Final = "reco-mlflow"
EDGES: Final = (EDGE_MLFLOW_RDS, EDGE_RECO_MLFLOW)

# Which side of each edge a cut isolates from its dependency (the edge's caller).
EDGE_SOURCE: Final = {EDGE_MLFLOW_RDS: App.MLFLOW.value, EDGE_RECO_MLFLOW: App.RECO.value}


class FaultKind(StrEnum):
    """Kinds of fault windows (chaoshelius.windows) and of the stack's TTL-bound faults."""

    POD_KILL = "pod-kill"
    SCALE = "scale"
    PATH = "path"
    DRAIN = "drain"


class PathMode(StrEnum):
    """How a cut edge misbehaves (local: the path proxy; kubernetes: policy or Chaos Mesh)."""

    BLACKHOLE = "blackhole"  # connections hang, no RST: a partition, a NetworkPolicy drop
    RESET = "reset"  # connections are refused/reset at once
    LATENCY = "latency"  # every chunk is delayed


# Metric names that probes, reports, alert rules and the service share (a contract).
FALLBACK_GAUGE: Final = "reco_engine_in_fallback_mode"
MODEL_INFO: Final = "reco_engine_model_info"
REFRESH_FAILURES: Final = "reco_engine_refresh_failures_total"
SERVER_REQUESTS: Final = "reco_engine_requests_total"
SERVER_LATENCY: Final = "reco_engine_requests_latency_seconds"
CLIENT_REQUESTS: Final = "helius_client_requests_total"
CLIENT_LATENCY: Final = "helius_client_request_latency_seconds"
# good /predict answers by the model and pod that served them (loadtests/locustfile.py)
CLIENT_ANSWERS: Final = "helius_client_answers_total"
# Unix time of a recommender's last refresh that confirmed the registry's model (0: never)
LAST_REFRESH_GAUGE: Final = "reco_engine_last_successful_refresh_timestamp_seconds"
# prometheus_client's process collector, on every recommender's registry (Linux: /proc)
RESIDENT_MEMORY: Final = "process_resident_memory_bytes"
# The prediction route: its `route` label on the server metrics and its `name` on the client's
# (the load also calls /health, which always answers 200 and is not a prediction).
PREDICT_ROUTE: Final = "/predict"


class Probe(NamedTuple):
    """An HTTP probe as the manifests declare it (tests/manifests checks they agree)."""

    path: str
    period_seconds: float
    failure_threshold: int
    timeout_seconds: float


# The recommender's liveness probe, as in manifests/base/reco.yaml; the local stack's
# supervisor runs it like the kubelet (restart after `failure_threshold` failures).
RECO_LIVENESS: Final = Probe("/health", 10.0, 3, 2.0)
# MLflow's liveness probe, as in manifests/base/mlflow.yaml.
MLFLOW_LIVENESS: Final = Probe("/health", 10.0, 6, 3.0)


class Target(StrEnum):
    """Where the runs go (`target` in the configuration, HELIUS_TARGET, `suite run --target`)."""

    LOCAL = "local"  # the local stack (chaoshelius.stack)
    KUBERNETES = "kubernetes"  # an allow-listed cluster (chaoshelius.drivers.kubernetes)
