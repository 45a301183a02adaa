"""Client load for the experiments: Locust in the background (actions) and what it saw (probes).

`plan.LoadPlan` is what start_load decided and hands the load generator on either target;
`locust_csv` reads Locust's CSVs (for the probes and the report). The locustfile itself lives
in `loadtests/` and runs in its own process; this package never imports Locust.
"""
