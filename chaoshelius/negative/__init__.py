"""Negative controls: known-fragile variants of the system, against which experiments must deviate.

A check that cannot fail is a defect. For every experiment in `experiments/`, `controls.yml`
names a stack profile (`profiles/*.yml`) that breaks the system in the way the experiment
guards against, and the hypothesis probe that must catch it. `chaoshelius suite run --negative`
runs them all; a negative control passes only when its experiment deviates *on that probe*.

Fragile recommender variants live in `fragile/`, outside the service package: the production
code path never contains them. They wrap `helius_reco.main.create_app` instead of forking it.
"""

from chaoshelius.negative.controls import NegativeControl, load_controls, profile_path

__all__ = ["NegativeControl", "load_controls", "profile_path"]
