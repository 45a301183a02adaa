"""Client load for the experiments: Locust in the background (actions) and what it saw (probes).

The locustfile itself lives in `loadtests/` and runs in its own process; this package never
imports Locust.
"""
