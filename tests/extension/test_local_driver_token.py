"""The local driver carries the stack's token (issue 11), found where docs/stack.md says:
`HELIUS_CONTROL_TOKEN` first, else `<helius_stack_dir>/control.token`. Against the fake of
the control API, which, like the real one, answers 401 without the right token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_control import FakeStack

from chaoshelius.config import HarnessConfig
from chaoshelius.drivers.local import LocalDriver
from chaoshelius.exceptions import TargetError
from chaoshelius.stack import auth


def _driver(configuration: dict[str, Any], **overrides: Any) -> LocalDriver:
    return LocalDriver(HarnessConfig.from_chaos({**configuration, **overrides}))


def test_the_driver_reads_the_token_from_the_stack_dir(
    fake_stack: tuple[FakeStack, str], configuration: dict[str, Any]
) -> None:
    assert len(_driver(configuration).list_pods("mlflow")) == 3


def test_without_the_token_the_driver_fails_saying_where_to_put_it(
    fake_stack: tuple[FakeStack, str], configuration: dict[str, Any], tmp_path: Path
) -> None:
    empty = tmp_path / "no-stack-here"
    with pytest.raises(TargetError, match="HTTP 401") as caught:
        _driver(configuration, helius_stack_dir=str(empty)).list_pods("mlflow")
    assert "HELIUS_CONTROL_TOKEN" in str(caught.value) and str(empty) in str(caught.value)
    assert fake_stack[0].requests == []  # refused before anything was recorded


def test_the_environment_variable_wins_over_the_token_file(
    fake_stack: tuple[FakeStack, str],
    configuration: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(auth.TOKEN_ENV, "stale-token")
    with pytest.raises(TargetError, match="HTTP 401"):
        _driver(configuration).active_faults()
    monkeypatch.setenv(auth.TOKEN_ENV, fake_stack[0].token)
    assert _driver(configuration, helius_stack_dir="/nonexistent").active_faults() == []


def test_a_bad_argument_is_refused_by_the_shared_model_before_any_request(
    fake_stack: tuple[FakeStack, str], configuration: dict[str, Any]
) -> None:
    with pytest.raises(TargetError, match="ttl_seconds"):
        _driver(configuration).drain_zone("zone-a", ttl_seconds=0)
    with pytest.raises(TargetError, match="replicas"):
        _driver(configuration).scale("mlflow", replicas=-1, ttl_seconds=30)
    assert fake_stack[0].requests == []
