"""Helius resilience harness: a Chaos Toolkit extension, target drivers, the local stack,
the suite runner and the report builder for the Helius recommender service."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
