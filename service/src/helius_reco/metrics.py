"""Prometheus metrics of the service, all registered on the registry they are given."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
REFRESH_FAILURE_REASONS = (
    "timeout",  # the attempt passed the overall refresh deadline and was abandoned
    "unavailable",  # MLflow refused, errored or its HTTP calls timed out
    "not_found",  # no such registered model or alias
    "artifact_rejected",  # the artifact failed validation (see reco_engine_artifact_rejected_total)
    "busy",  # earlier abandoned attempts still hold every refresh slot
    "disabled",  # no tracking URI configured
)


class Metrics:
    """The series an operator needs. Names are a contract (docs/architecture.md)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "reco_engine_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "reco_engine_requests_latency_seconds",
            "Time from request received to response sent, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "reco_engine_requests_in_flight", "Requests being handled now.", registry=registry
        )
        self.fallback = Gauge(
            "reco_engine_in_fallback_mode",
            "1 while the service is not confirmed on the registry's current model "
            "(the last refresh failed, or none succeeded yet), else 0.",
            registry=registry,
        )
        self.model_info = Gauge(
            "reco_engine_model_info",
            "Always 1; labels name the model being served and where it came from.",
            ["version", "source"],
            registry=registry,
        )
        self.refresh_failures = Counter(
            "reco_engine_refresh_failures",
            "Model refresh attempts that failed, by reason.",
            ["reason"],
            registry=registry,
        )
        self.refresh_duration = Histogram(
            "reco_engine_refresh_duration_seconds",
            "Wall time of a refresh attempt, as seen by the refresher (bounded by the deadline).",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0),
            registry=registry,
        )
        self.last_success = Gauge(
            "reco_engine_last_successful_refresh_timestamp_seconds",
            "Unix time of the last refresh that confirmed the registry's current model (0: never).",
            registry=registry,
        )
        self.artifact_rejected = Counter(
            "reco_engine_artifact_rejected",
            "Registry or cache artifacts rejected as corrupt or malformed.",
            registry=registry,
        )
        for reason in REFRESH_FAILURE_REASONS:  # export zeros so increase() has a start
            self.refresh_failures.labels(reason)
        self.fallback.set(1)

    def set_model(self, version: str, source: str) -> None:
        """Replace the single model_info series."""
        self.model_info.clear()
        self.model_info.labels(version, source).set(1)
