"""The local driver carries the stack's token (issue 11), found where docs/stack.md says:
`HELIUS_CONTROL_TOKEN` first, else `<helius_stack_dir>/control.token`. Against the fake of
the control API, which, like the real one, answers 401 without the right token."""

from __future__ import annotations

import http.server
import ipaddress
import socket
import threading
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from support.fake_control import FakeStack

from chaoshelius.config import HarnessConfig
from chaoshelius.drivers.local import LocalDriver
from chaoshelius.exceptions import ConfigurationError, TargetError
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


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:  # noqa: N802  (http.server's spelling)
        self.seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"faults": []}')

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _non_loopback_address() -> str | None:
    """This machine's address on its default route (no packet is sent: UDP connect only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routing lookup only
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


def test_the_token_goes_to_loopback_only_a_non_loopback_url_is_refused_before_sending(
    configuration: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17 item 6: an experiment naming another host as helius_control_url must not
    receive the control token. A real recording HTTP server listens on this machine's
    non-loopback address; the driver refuses before connecting, so it records nothing."""
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to listen on")
    monkeypatch.setenv(auth.TOKEN_ENV, "secret-control-token")
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer((address, 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://{address}:{server.server_address[1]}"
        with pytest.raises(ConfigurationError, match="helius_control_url") as caught:
            _driver(configuration, helius_control_url=url).active_faults()
        assert "loopback" in str(caught.value) and "\n" not in str(caught.value)
        assert _Recorder.seen == []
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com:17000",
        "http://192.0.2.7:17000",
        "http://127.0.0.1.example.com:17000",
        "https://127.0.0.1:17000",
        "http://[fd00::2]:17000",
        "file:///etc/passwd",
    ],
)
def test_every_non_loopback_or_non_http_control_url_is_refused(
    configuration: dict[str, Any], url: str
) -> None:
    sent: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(200))
    config = HarnessConfig.from_chaos({**configuration, "helius_control_url": url})
    with pytest.raises(ConfigurationError, match="helius_control_url"):
        LocalDriver(config, transport=transport).active_faults()
    assert sent == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:17000",
        "http://127.8.9.10:1/",
        "http://localhost:17000",
        "http://[::1]:17000",
    ],
)
def test_loopback_control_urls_are_accepted(configuration: dict[str, Any], url: str) -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"faults": []})

    config = HarnessConfig.from_chaos({**configuration, "helius_control_url": url})
    assert LocalDriver(config, transport=httpx.MockTransport(answer)).active_faults() == []
    assert len(sent) == 1
