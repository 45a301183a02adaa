"""The resilience score: one number per run, weighted by probe (pure functions).

In the spirit of Litmus' resilience score (the weighted mean of each probe's success), with
this harness's rule that **missing data is never a pass**:

    score = 100 × Σ(weight × met) / Σ(weight)     over the steady-state hypothesis's probes

- a probe counts as met only when every run of it after the method (and during it, with
  `--hypothesis-strategy`) met its tolerance; an SLO probe that measured nothing (`value` is
  null outside the vacuous before-method phase) never counts as met;
- a probe that never ran after the method (interrupted, aborted, failed before the method)
  counts 0: its weight stays in the denominator;
- weights default to 1; an experiment may set them in its `extensions` block:
  `{"name": "chaoshelius", "probe_weights": {"predictions-continued": 3}}`;
- a run that was not judged (dry run, the fault never happened) or never ran has no score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chaoshelius.report.model import UNJUDGED, HypothesisRow, ProbeResult, Verdict

__all__ = ["EXTENSION_NAME", "Score", "compute_score", "probe_weights"]

EXTENSION_NAME = "chaoshelius"


@dataclass(frozen=True)
class Score:
    value: float | None  # 0..100; None: not judged
    detail: str  # how it was made, shown next to it


def probe_weights(experiment: Mapping[str, Any]) -> dict[str, float]:
    """`probe_weights` from the experiment's `extensions` entry named "chaoshelius"."""
    weights: dict[str, float] = {}
    extensions = experiment.get("extensions")
    for ext in extensions if isinstance(extensions, list) else ():
        if isinstance(ext, Mapping) and ext.get("name") == EXTENSION_NAME:
            raw = ext.get("probe_weights")
            for name, weight in raw.items() if isinstance(raw, Mapping) else ():
                if isinstance(weight, int | float) and not isinstance(weight, bool):
                    weights[str(name)] = max(0.0, float(weight))
    return weights


def compute_score(
    rows: Sequence[HypothesisRow], verdict: Verdict, weights: Mapping[str, float]
) -> Score:
    """The run's score from its hypothesis rows (see the module docstring)."""
    if verdict in UNJUDGED:  # not judged, not run
        return Score(None, f"{verdict}: no score")
    if not rows:
        return Score(0.0, "no steady-state hypothesis: nothing held, score 0")
    total = met_weight = 0.0
    met_names: list[str] = []
    missing: list[str] = []
    for row in rows:
        weight = weights.get(row.name, 1.0)
        total += weight
        runs = [*row.during, *([row.after] if row.after is not None else [])]
        if row.after is None:
            missing.append(row.name)
        elif all(_held(p) for p in runs):
            met_weight += weight
            met_names.append(row.name)
    if total <= 0:
        return Score(0.0, "every probe has weight 0: score 0")
    value = 100.0 * met_weight / total
    weighted = any(weights.get(r.name, 1.0) != 1.0 for r in rows)
    detail = (
        f"{len(met_names)} of {len(rows)} probes held after the method"
        + (f" (weighted {met_weight:g} of {total:g})" if weighted else "")
        + (f"; {len(missing)} never ran after it and count as failed" if missing else "")
    )
    return Score(value, detail)


def _held(probe: ProbeResult) -> bool:
    if probe.met is not True:
        return False
    return not (probe.structured and probe.value is None and probe.phase != "before")
