"""`stack.json` is a `StackState`: written and read in one place (chaoshelius/stack/state.py)."""

from __future__ import annotations

from pathlib import Path

from chaoshelius.stack.ports import StackPorts
from chaoshelius.stack.state import StackPids, StackState, read_state, write_state
from chaoshelius.topology import EDGE_MLFLOW_RDS, EDGE_RECO_MLFLOW


def test_stack_json_round_trips_through_the_typed_state(tmp_path: Path) -> None:
    path = tmp_path / "stack.json"
    ports = StackPorts(31000)
    state = StackState(
        phase="ready",
        base_port=ports.base,
        ports=ports.by_name(),
        pids=StackPids(supervisor=10, prometheus=11, postgres=None),
        pod_process_groups=[12, 13],
        identities={"10": {"create_time": 1.0, "cmdline": ["python"]}},
        profile={"name": "default"},
    )
    write_state(path, state)
    assert read_state(path) == state


def test_a_missing_or_foreign_stack_json_reads_as_no_stack(tmp_path: Path) -> None:
    path = tmp_path / "stack.json"
    assert read_state(path) is None
    path.write_text("{not json")
    assert read_state(path) is None
    path.write_text('{"pids": {"supervisor": "not a pid"}}')
    assert read_state(path) is None


def test_the_ports_stack_json_lists_are_the_stack_ports() -> None:
    ports = StackPorts(31000)
    by_name = ports.by_name()
    assert by_name["control"] == ports.control
    assert by_name[EDGE_MLFLOW_RDS] == ports.path_proxy(EDGE_MLFLOW_RDS)
    assert by_name[EDGE_RECO_MLFLOW] == ports.path_proxy(EDGE_RECO_MLFLOW)
    assert set(ports.listeners()) <= set(by_name.values())
