"""Errors of the local stack; each message says what to do about it."""

from __future__ import annotations

from chaoshelius.exceptions import HeliusError


class StackError(HeliusError):
    """The local stack could not do what was asked (start, stop, a fault...)."""


class InvalidRequest(StackError):
    """The request itself is malformed (a bad selector, a missing parameter): HTTP 400."""


class NotFound(StackError):
    """The named pod, zone, path, app or profile does not exist: HTTP 404."""


class ControlUnreachable(StackError):
    """No answer from a stack's control API (not listening, or a transport error)."""


class PortInUseError(StackError):
    """A port the stack needs is already taken by another process."""

    def __init__(self, port: int, what: str) -> None:
        super().__init__(
            f"port {port} ({what}) is already in use on 127.0.0.1: stop whatever listens there "
            f"or choose another --base-port"
        )
        self.port = port
        self.what = what


class ProcessStartError(StackError):
    """A child process (PostgreSQL, MLflow, Prometheus, a pod) did not become ready."""
