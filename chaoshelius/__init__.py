"""Helius resilience harness: a Chaos Toolkit extension, target drivers, the local stack,
the suite runner and the report builder for the Helius recommender service."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "discover", "load_exported_activities"]


def discover(discover_system: bool = True) -> Any:
    """Chaos Toolkit discovery entry point (`chaos discover`); see chaoshelius.discovery."""
    from chaoshelius.discovery import discover as _discover

    return _discover(discover_system)


def load_exported_activities() -> Any:
    """The extension's actions and probes; see chaoshelius.discovery."""
    from chaoshelius.discovery import load_exported_activities as _load

    return _load()
