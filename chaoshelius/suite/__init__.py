"""The suite: the experiment catalogue (or its negative controls) run end to end.

`plan` picks the runs, `run_suite` runs them (chaoshelius.suite.runner) against the local stack
or a cluster, each as a `chaos run` subprocess (chaoshelius.suite.chaos) started once the target
is steady (chaoshelius.suite.steady); chaoshelius.suite.results writes what they produced.
"""

from chaoshelius.suite.chaos import (
    chaos_argv,
    chaos_env,
    chaos_run_args,
    cluster_env,
    progress_reporter,
)
from chaoshelius.suite.model import PlannedRun, SuiteError, SuiteOptions, SuiteResult
from chaoshelius.suite.plan import plan
from chaoshelius.suite.results import summary_line
from chaoshelius.suite.runner import run_suite, suite_target

__all__ = [
    "PlannedRun",
    "SuiteError",
    "SuiteOptions",
    "SuiteResult",
    "chaos_argv",
    "chaos_env",
    "chaos_run_args",
    "cluster_env",
    "plan",
    "progress_reporter",
    "run_suite",
    "suite_target",
    "summary_line",
]
