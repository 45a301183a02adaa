"""Where everything listens: fixed offsets from the stack's base port (docs/architecture.md)."""

from __future__ import annotations

from dataclasses import dataclass

from chaoshelius.topology import EDGE_MLFLOW_RDS, EDGE_RECO_MLFLOW

DEFAULT_BASE_PORT = 17000
POD_PORT_OFFSETS = range(100, 400)  # pods get a fresh port from here, like a fresh pod IP


@dataclass(frozen=True)
class StackPorts:
    """All fixed ports of one stack, from its base port."""

    base: int = DEFAULT_BASE_PORT

    @property
    def control(self) -> int:
        return self.base

    @property
    def mlflow_service(self) -> int:
        return self.base + 50

    @property
    def reco_mlflow_path(self) -> int:
        return self.base + 51

    @property
    def reco_service(self) -> int:
        return self.base + 80

    @property
    def loadgen(self) -> int:
        return self.base + 89

    @property
    def prometheus(self) -> int:
        return self.base + 90

    @property
    def postgres(self) -> int:
        return self.base + 432

    @property
    def mlflow_rds_path(self) -> int:
        return self.base + 433

    def path_proxy(self, edge: str) -> int:
        return {EDGE_MLFLOW_RDS: self.mlflow_rds_path, EDGE_RECO_MLFLOW: self.reco_mlflow_path}[
            edge
        ]

    def by_name(self) -> dict[str, int]:
        """The ports as stack.json lists them (the path proxies under their edge's name)."""
        return {
            "control": self.control,
            "reco_service": self.reco_service,
            "mlflow_service": self.mlflow_service,
            "prometheus": self.prometheus,
            "postgres": self.postgres,
            EDGE_MLFLOW_RDS: self.mlflow_rds_path,
            EDGE_RECO_MLFLOW: self.reco_mlflow_path,
            "loadgen": self.loadgen,
        }

    def listeners(self) -> dict[int, str]:
        """Ports the stack binds at start, with what they are for (the loadgen's is not ours)."""
        return {
            self.control: "control API",
            self.mlflow_service: "MLflow service proxy",
            self.reco_mlflow_path: f"path proxy {EDGE_RECO_MLFLOW}",
            self.reco_service: "recommender service proxy",
            self.prometheus: "Prometheus",
            self.postgres: "PostgreSQL",
            self.mlflow_rds_path: f"path proxy {EDGE_MLFLOW_RDS}",
        }

    def pod_ports(self) -> range:
        return range(self.base + POD_PORT_OFFSETS.start, self.base + POD_PORT_OFFSETS.stop)
