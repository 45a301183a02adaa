"""Typed errors of the service. Foreign exceptions (MLflow, numpy, OS) are converted at the
boundary that meets them (`lifecycle.registry`, `model.artifact`), never deeper."""

from __future__ import annotations


class RecoError(Exception):
    """Root of every error this package raises on purpose."""


class ArtifactError(RecoError):
    """A model artifact is missing, corrupt, malformed or of an unknown format."""


class RegistryError(RecoError):
    """The model registry could not answer (down, hung, refusing, or no such alias)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
