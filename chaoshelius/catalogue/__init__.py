"""The experiment catalogue's building blocks (`experiments/build.py` writes experiments/*.json).

`steps`: Chaos Toolkit steps made from the activity functions, checked as they are written;
`timing`: the per-target durations; `blocks`: what every experiment shares; `describe`: the
thresholds an experiment applies, in words, rendered from its steps for its description.
"""
