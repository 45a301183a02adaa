"""One root error for the harness; foreign exceptions are converted to these at the boundary.

Chaos Toolkit activities raise `chaoslib.exceptions.ActivityFailed` (subclassed here so
chaoslib records the failure) with a sentence a person can act on.
"""

from __future__ import annotations

from chaoslib.exceptions import ActivityFailed


class HeliusError(Exception):
    """Root of the harness's own errors."""


class ConfigurationError(HeliusError, ActivityFailed):
    """A configuration key is missing or malformed; the message names the key."""


class TargetError(HeliusError, ActivityFailed):
    """The target (local stack or cluster) refused or could not do what was asked."""


class NotAllowedError(TargetError):
    """The kubernetes driver was asked to act outside the allow-listed context/namespace."""


class PrometheusError(HeliusError, ActivityFailed):
    """Prometheus is unreachable, answered an error, or a query returned no data."""
