"""Where a suite's runs go: the local stack (brought up with the profile each run needs, left
as it was found) or a cluster (nothing brought up; see chaoshelius.suite.cluster).

Each target answers the suite's loop (chaoshelius.suite.runner) the same questions: what to
say first, get ready for this run, is it steady, with which environment does `chaos run`
start, and what to do on the way out.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Protocol

from chaoshelius.exceptions import HeliusError
from chaoshelius.promapi import PrometheusAPI
from chaoshelius.stack import auth, lifecycle
from chaoshelius.stack.config import StackConfig
from chaoshelius.stack.state import StackPaths
from chaoshelius.suite.chaos import chaos_env, cluster_env
from chaoshelius.suite.cluster import PREDICTION_CHECK_SKIPPED, ResolvedRun, cluster_unsteady_reason
from chaoshelius.suite.interrupts import Interrupts
from chaoshelius.suite.model import PlannedRun, SuiteError, SuiteOptions
from chaoshelius.suite.steady import STEADY_TIMEOUT_SECONDS, await_steady, poll_steady

__all__ = ["ClusterTarget", "LocalStack", "SuiteTarget"]


class SuiteTarget(Protocol):
    """What the suite's loop asks of where the runs go."""

    noun: str  # "stack" / "cluster", in the lines the suite prints

    def begin(self) -> None: ...

    def prepare(self, run: PlannedRun) -> None: ...

    def unsteady(self, alerts: bool, interrupts: Interrupts) -> tuple[str | None, str]: ...

    def env(self, run: PlannedRun, run_dir: Path) -> dict[str, str]: ...

    def leave(self) -> None: ...


class LocalStack:
    """The local stack: started (or switched) to the profile a run needs, left as found."""

    noun = "stack"

    def __init__(self, options: SuiteOptions) -> None:
        self.options = options
        self.paths = StackPaths(options.state_dir.resolve())
        found = lifecycle.running_state(self.paths)
        self.found = StackConfig.model_validate(found.profile) if found else None
        self.current: Path | None = None
        self.state: dict[str, Any] | None = None  # None: not brought up by this suite yet

    def begin(self) -> None:
        return None

    def prepare(self, run: PlannedRun) -> None:
        if self.state is not None and run.profile == self.current:
            return
        options = self.options
        config = StackConfig.load(run.profile) if run.profile else StackConfig()
        if options.progress:
            options.echo(f"-- local stack, profile {config.name!r}: starting (if needed)")
        up = lifecycle.up(options.state_dir, options.base_port, config, restart=True)
        self.state, self.current = up.state, run.profile

    def unsteady(self, alerts: bool, interrupts: Interrupts) -> tuple[str | None, str]:
        return await_steady(
            self.options.state_dir, self._state(), STEADY_TIMEOUT_SECONDS, interrupts, alerts=alerts
        )

    def env(self, run: PlannedRun, run_dir: Path) -> dict[str, str]:
        token = auth.find_token(self.paths.root) or ""
        return chaos_env(run, run_dir, self._state()["ports"], self.options, token)

    def _state(self) -> dict[str, Any]:
        if self.state is None:
            raise SuiteError("the local stack is used before prepare() brought it up")
        return self.state

    def leave(self) -> None:
        """Leave the stack as found: down if we started it, else back on its own profile."""
        options = self.options
        if options.keep_stack:
            return
        if self.found is None:
            lifecycle.down(options.state_dir)
        else:
            lifecycle.up(options.state_dir, options.base_port, self.found, restart=True)


class ClusterTarget:
    """target=kubernetes: no stack to bring up or leave; the steady wait asks the cluster
    (through the driver) and the configured Prometheus."""

    noun = "cluster"

    def __init__(self, options: SuiteOptions, resolved: ResolvedRun) -> None:
        from chaoshelius.drivers import get_driver

        try:
            self.config = resolved.harness_config()
            # the allow-lists are checked here, once, before any run
            self.driver = get_driver(self.config)
        except HeliusError as exc:
            raise SuiteError(f"target=kubernetes: {exc}") from exc
        self.options = options
        self.prometheus_url = str(resolved.prometheus_url)
        self.prom = PrometheusAPI(self.prometheus_url, self.config.helius_http_timeout_seconds)

    def begin(self) -> None:
        self.options.echo(
            f"-- target kubernetes: namespace {self.config.kube_namespace!r}, Prometheus "
            f"{self.prometheus_url}; {PREDICTION_CHECK_SKIPPED}"
        )

    def prepare(self, run: PlannedRun) -> None:
        return None

    def unsteady(self, alerts: bool, interrupts: Interrupts) -> tuple[str | None, str]:
        namespace = self.config.kube_namespace
        reason = partial(cluster_unsteady_reason, self.driver, self.prom, namespace, alerts)
        return poll_steady(reason, STEADY_TIMEOUT_SECONDS, interrupts)

    def env(self, run: PlannedRun, run_dir: Path) -> dict[str, str]:
        return cluster_env(run, run_dir, self.prometheus_url, self.options)

    def leave(self) -> None:
        return None
