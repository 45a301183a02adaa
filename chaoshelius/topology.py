"""Names shared by the manifests, the local stack, the drivers and the experiments.

One place: the Kubernetes manifests (checked by tests/manifests), the local stack's pods and
Prometheus labels, and the chaos drivers all read these, so a selector cannot drift.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

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
