"""The embedded local stack: the whole system on one machine, with faults that revert themselves.

`daemon.py` is the supervisor (one asyncio process: pods, service and path proxies, the control
API, the TTL reaper); its `Stack` only wires `pod_specs`, `boot`, `supervisor`, `injection`,
`status` and `events`, and the control API (`control.py`) calls it through the
`operations.StackOperations` protocol. `postgres.py` and `mlflow_server.py` are reusable server
helpers; the CLI lives in `chaoshelius/cli/stack.py`. See docs/stack.md.
"""
