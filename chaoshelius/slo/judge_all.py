"""A Chaos Toolkit control: after the method, judge **every** hypothesis probe.

Chaos Toolkit stops a steady-state hypothesis at its first failing probe. After the method that
hides what else went wrong (a run that lost clients *and* never raised its alert shows only
the first), and makes "which check caught it" depend on the order of the list. Declared in an
experiment's `controls`, this control runs the probes that were skipped, judges each against
its own tolerance, and appends them to the hypothesis state with `"judged_after_deviation":
true`. The run's verdict does not change (it has deviated already); the journal, the report
and the negative controls see every failing probe.

Before the method (no fault yet in this run) it does nothing: a broken start stays a broken
start. In a dry run it does nothing either.

    "controls": [{"name": "judge-every-probe",
                  "provider": {"type": "python", "module": "chaoshelius.slo.judge_all"}}]
"""

from __future__ import annotations

from typing import Any

from chaoslib.activity import execute_activity
from chaoslib.hypothesis import within_tolerance
from chaoslib.types import Configuration, Experiment, Hypothesis, Secrets

from chaoshelius import windows

__all__ = ["after_hypothesis_control"]


def after_hypothesis_control(
    context: Hypothesis,
    state: dict[str, Any] | None = None,
    experiment: Experiment | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
    **kwargs: Any,
) -> None:
    """Judge the probes Chaos Toolkit skipped after the first failing one (after the method)."""
    if not state or state.get("steady_state_met") is not False or experiment is None:
        return
    if not windows.fault_phase_started():  # before the method, or a dry run of the actions
        return
    probes = list(context.get("probes", []))
    done = len(state.get("probes", []))
    for activity in probes[done:]:
        run = execute_activity(
            experiment=experiment,
            activity=activity,
            configuration=configuration,
            secrets=secrets,
            dry=None,  # chaoslib: not dry
        )
        run["judged_after_deviation"] = True
        if run.get("status") == "failed":
            run["tolerance_met"] = False
        else:
            run["tolerance_met"] = bool(
                within_tolerance(
                    activity.get("tolerance"),
                    run.get("output"),
                    configuration=configuration,
                    secrets=secrets,
                )
            )
        state["probes"].append(run)
