"""Only the stack's owner may use it (issue 11), checked against the real running daemon.

The control API answers nobody without the stack's token, no Host but a loopback name, and no
state-changing request whose body is not JSON; a profile is named, never sent, so nothing over
HTTP names code to run. PostgreSQL asks for a password that is in no URI, argv or log; state,
logs and the token are for the owner only; Prometheus cannot be told to quit over HTTP.
Every refused request leaves the stack as it was.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg2
import pytest
from support.stack import StackHandle

from chaoshelius.stack import auth
from chaoshelius.stack.api_models import MAX_BODY_BYTES
from chaoshelius.stack.state import StackPaths
from chaoshelius.topology import EDGE_MLFLOW_RDS

pytestmark = pytest.mark.integration

# every route of the API, with a body a client would send
ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/status", None),
    ("GET", "/pods", None),
    ("GET", "/faults", None),
    ("GET", "/events", None),
    ("GET", "/metrics", None),
    ("POST", "/pods/kill", {"selector": "app=grafana"}),
    ("POST", "/zones/zone-a/drain", {"ttl_seconds": 30}),
    ("POST", "/zones/zone-a/uncordon", {}),
    ("POST", f"/paths/{EDGE_MLFLOW_RDS}/faults", {"mode": "blackhole", "ttl_seconds": 30}),
    ("DELETE", f"/paths/{EDGE_MLFLOW_RDS}/faults", None),
    ("POST", "/apps/mlflow/scale", {"replicas": 0, "ttl_seconds": 30}),
    ("DELETE", "/apps/mlflow/scale", None),
    ("DELETE", "/faults/path-1", None),
    ("PUT", "/profile", {"name": "default"}),
    ("POST", "/shutdown", {}),
]


def _snapshot(stack: StackHandle) -> tuple[Any, ...]:
    status = stack.control.status()
    return (
        status["phase"],
        sorted((p["name"], p["restarts"]) for p in status["pods"]),
        status["faults"],
        status["drained_zones"],
        {name: proxy["mode"] for name, proxy in status["proxies"].items()},
    )


def _call(
    stack: StackHandle,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Response:
    return stack.http.request(
        method,
        stack.control.url + path,
        json=body if content is None else None,
        content=content,
        headers=headers or {},
        timeout=10,
    )


def _assert_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()
    assert list(error) == ["error"] and error["error"], error
    for word in words:
        assert word in error["error"], error


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_every_route_refuses_a_request_without_the_token(
    stack: StackHandle, method: str, path: str, body: Any
) -> None:
    before = _snapshot(stack)
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": stack.token}):
        response = _call(stack, method, path, body, headers)
        _assert_error(response, 401, "token")
        assert response.headers["www-authenticate"] == "Bearer"
    assert _snapshot(stack) == before


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:27000", "127.0.0.1.nip.io", "10.0.0.1", "localhost.evil"]
)
def test_a_host_header_that_is_not_loopback_is_refused_even_with_the_token(
    stack: StackHandle, host: str
) -> None:
    """DNS rebinding: a web page's request reaches 127.0.0.1 with the page's own host name."""
    before = _snapshot(stack)
    auth_header = auth.bearer(stack.token)
    for method, path, body in [("GET", "/status", None), ("POST", "/shutdown", {})]:
        response = _call(stack, method, path, body, {**auth_header, "Host": host})
        _assert_error(response, 403, host)
    assert _snapshot(stack) == before


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST:1", "[::1]:27000"])
def test_loopback_host_names_are_accepted(stack: StackHandle, host: str) -> None:
    response = _call(stack, "GET", "/faults", headers={**auth.bearer(stack.token), "Host": host})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("method", "path", "content_type", "content"),
    [
        ("POST", "/shutdown", "application/x-www-form-urlencoded", b"a=1"),
        ("POST", "/shutdown", None, b""),
        ("POST", "/zones/zone-a/uncordon", "text/plain", b"{}"),
        ("POST", "/zones/zone-a/drain", "multipart/form-data; boundary=x", b'{"ttl_seconds": 5}'),
        ("PUT", "/profile", "text/plain", b'{"name": "default"}'),
        ("DELETE", f"/paths/{EDGE_MLFLOW_RDS}/faults", "text/plain", b"x"),
    ],
)
def test_state_changing_requests_take_json_bodies_only(
    stack: StackHandle, method: str, path: str, content_type: str | None, content: bytes
) -> None:
    """What a cross-origin HTML form can send (no preflight) is refused before any route."""
    before = _snapshot(stack)
    headers = auth.bearer(stack.token)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = _call(stack, method, path, headers=headers, content=content)
    _assert_error(response, 415, "JSON")
    assert _snapshot(stack) == before


def test_a_body_over_the_limit_is_refused(stack: StackHandle) -> None:
    before = _snapshot(stack)
    headers = {**auth.bearer(stack.token), "Content-Type": "application/json"}
    big = b'{"selector": "' + b"x" * MAX_BODY_BYTES + b'"}'
    _assert_error(_call(stack, "POST", "/pods/kill", headers=headers, content=big), 413)

    def chunks() -> Any:  # no Content-Length: counted while read
        for _ in range(5):
            yield b" " * (MAX_BODY_BYTES // 2)
        yield b"{}"

    response = stack.http.post(
        stack.control.url + "/zones/zone-a/uncordon", content=chunks(), headers=headers
    )
    _assert_error(response, 413)
    assert _snapshot(stack) == before


def test_a_selector_over_the_cap_is_a_400_and_answers_at_once(stack: StackHandle) -> None:
    """An <img src=".../pods?selector=..."> with 32 k characters stalled the loop for 3.4 s."""
    response = stack.http.get(
        stack.control.url + "/pods",
        params={"selector": "a" + " " * 32_000 + "x"},  # the old regex backtracked on it
        headers=auth.bearer(stack.token),
        timeout=10,
    )
    _assert_error(response, 400, "at most")
    assert response.elapsed.total_seconds() < 1.0


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"reco_app": "evil:app"}, 400, []),
        ({"name": "default", "reco_app": "evil:app"}, 400, ["reco_app"]),
        ({"name": "default", "reco_env": {"PYTHONPATH": "/tmp/evil"}}, 400, ["reco_env"]),  # noqa: S108  a hostile value the API must refuse
        ({"name": "no-such-profile"}, 404, ["no-such-profile", "no-fallback"]),
        ({"name": "../../../tmp/evil"}, 400, ["name"]),
        ({"name": "/tmp/evil"}, 400, ["name"]),  # noqa: S108  a hostile value the API must refuse
    ],
)
def test_a_profile_is_a_shipped_name_never_code_or_environment(
    stack: StackHandle, body: dict[str, Any], status: int, words: list[str]
) -> None:
    before = _snapshot(stack)
    before_profile = stack.control.status()["profile"]
    response = _call(stack, "PUT", "/profile", body, auth.bearer(stack.token))
    _assert_error(response, status, *words)
    assert _snapshot(stack) == before
    assert stack.control.status()["profile"] == before_profile


def test_unknown_routes_and_methods_answer_the_api_error_shape(stack: StackHandle) -> None:
    headers = auth.bearer(stack.token)
    _assert_error(_call(stack, "GET", "/nope", headers=headers), 404)
    _assert_error(_call(stack, "GET", "/docs", headers=headers), 404)
    _assert_error(_call(stack, "GET", "/openapi.json", headers=headers), 404)
    _assert_error(_call(stack, "PATCH", "/status", {}, headers), 405)


def test_the_token_and_the_state_are_for_the_owner_only(stack: StackHandle) -> None:
    paths = StackPaths(stack.state_dir)
    token_file = auth.token_file(stack.state_dir)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(stack.token) >= 40  # token_urlsafe(32)
    for path in (paths.state_file, paths.profile_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for log in paths.logs.iterdir():
        assert stat.S_IMODE(log.stat().st_mode) & 0o077 == 0, log
    for directory in (paths.root, paths.logs, paths.run, paths.cache, paths.artifacts):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    postgres_home = Path(stack.state_dir) / "postgres"
    for path in (postgres_home, postgres_home / "password", postgres_home / "pgpass"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def _pg_connect(stack: StackHandle, password: str | None) -> Any:
    return psycopg2.connect(
        host="127.0.0.1",
        port=stack.ports.postgres,
        user="postgres",
        dbname="postgres",
        connect_timeout=3,
        **({"password": password} if password is not None else {}),
    )


def test_postgres_asks_every_client_for_the_password(
    stack: StackHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With trust authentication any local user was superuser (`COPY ... TO PROGRAM`)."""
    monkeypatch.delenv("PGPASSFILE", raising=False)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    for password in (None, "", "postgres", "wrong"):
        with pytest.raises(psycopg2.OperationalError, match="password"):
            _pg_connect(stack, password)
    conn = _pg_connect(stack, stack.pg_password)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW password_encryption")
            assert cur.fetchone() == ("scram-sha-256",)
            cur.execute("SELECT count(*) FROM pg_hba_file_rules WHERE auth_method = 'trust'")
            assert cur.fetchone() == (0,)
    finally:
        conn.close()
    password_file = Path(stack.state_dir) / "postgres" / "password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600


def test_the_database_password_is_in_no_argv_and_no_log(stack: StackHandle) -> None:
    password = stack.pg_password
    mlflow_pods = stack.pods("app=mlflow")
    assert mlflow_pods
    for pod in mlflow_pods:
        argv = " ".join(psutil.Process(pod["pid"]).cmdline())
        assert "--backend-store-uri" in argv and password not in argv
    for log in Path(stack.state_dir, "logs").iterdir():
        assert password not in log.read_text(errors="replace"), log
    assert password not in stack.control.status()["endpoints"]["postgres"]


def test_prometheus_cannot_be_told_to_quit_or_reload_over_http(stack: StackHandle) -> None:
    response = stack.http.post(stack.prometheus_url + "/-/reload", timeout=5)
    assert response.status_code == 403, response.text
    assert stack.http.get(stack.prometheus_url + "/-/ready", timeout=5).status_code == 200


def test_up_restart_swaps_to_a_shipped_profile_by_name_and_back(stack: StackHandle) -> None:
    """The in-place swap the negative controls use still works, through a name only."""
    from chaoshelius.stack import lifecycle
    from chaoshelius.stack.config import StackConfig, shipped_profile

    mlflow_before = sorted(p["name"] for p in stack.pods("app=mlflow"))
    try:
        result = lifecycle.up(
            stack.state_dir, stack.ports.base, shipped_profile("reco-single-replica"), restart=True
        )
        assert result.profile_swapped
        status = stack.control.status()
        assert status["profile"]["name"] == "reco-single-replica"
        assert [p["zone"] for p in status["pods"] if p["app"] == "helius-reco"] == ["zone-a"]
        events = stack.control.request("GET", "/events")["events"]
        assert any(e["event"] == "profile changed" for e in events)
    finally:
        back = lifecycle.up(stack.state_dir, stack.ports.base, StackConfig(), restart=True)
    assert back.profile_swapped
    assert sorted(p["name"] for p in stack.pods("app=mlflow")) == mlflow_before  # not restarted
