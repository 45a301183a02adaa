"""Helpers shared by the load tests (a module with a unique name, unlike conftest)."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "loadtests" / "locustfile.py"


def scrape(url: str) -> dict[tuple[str, ...], float]:
    """Samples of the exporter: (metric, label values sorted by label name) -> value."""
    text = httpx.get(url, timeout=2).text
    out: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, *(f"{k}={v}" for k, v in sorted(sample.labels.items())))
            out[key] = sample.value
    return out


def requests_count(samples: dict[tuple[str, ...], float], name: str, reason: str) -> float:
    outcome = "success" if reason == "ok" else "failure"
    key = (
        "helius_client_requests_total",
        f"name={name}",
        f"outcome={outcome}",
        f"reason={reason}",
    )
    return samples.get(key, 0.0)
