"""The suite: the experiment catalogue (or its negative controls) run end to end."""

from chaoshelius.suite.runner import (
    PlannedRun,
    SuiteError,
    SuiteOptions,
    SuiteResult,
    chaos_argv,
    chaos_env,
    chaos_run_args,
    cluster_env,
    plan,
    progress_reporter,
    run_suite,
    suite_target,
    summary_line,
)

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
