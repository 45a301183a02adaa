"""Prometheus and SLO probes: window-aware judgments of what clients and operators saw."""
