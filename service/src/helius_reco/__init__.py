"""helius-reco-service: a recommender that keeps answering when its model registry is down."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

SERVICE_NAME = "helius-reco-service"

try:
    __version__ = version("helius-reco")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["SERVICE_NAME", "__version__"]
