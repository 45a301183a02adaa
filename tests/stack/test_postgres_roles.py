"""MLflow connects to PostgreSQL as a role that owns only its database, not as the superuser
(issue 17, item 6): the superuser is for set-up. Real PostgreSQL and a real `mlflow db upgrade`
(the schema migration MLflow runs at start) as that role, through libpq's password file."""

from __future__ import annotations

import inspect
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from support.ports import free_port

from chaoshelius.stack import daemon, pod_specs
from chaoshelius.stack.postgres import PostgresServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    pg = PostgresServer(tmp_path_factory.mktemp("roles") / "postgres" / "data", free_port())
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()


def _as(server: PostgresServer, role: str, database: str) -> psycopg2.extensions.connection:
    return psycopg2.connect(
        host=server.host, port=server.port, user=role, dbname=database, connect_timeout=5,
        passfile=str(server.passfile),
    )  # fmt: skip


def test_the_stack_gives_mlflow_a_role_of_its_own() -> None:
    """The stack's wiring (its start is covered by tests/stack's session stack): MLflow's URI
    names the role, and the role is made with the database at boot."""
    assert pod_specs.MLFLOW_DB_ROLE != "postgres"
    assert "user=MLFLOW_DB_ROLE" in inspect.getsource(pod_specs.backend_uri)
    assert "MLFLOW_DB, MLFLOW_DB_ROLE" in inspect.getsource(daemon.Stack._boot)


def test_mlflow_migrates_its_database_as_a_role_that_is_not_a_superuser(
    server: PostgresServer,
) -> None:
    server.create_database("mlflow", owner="mlflow")
    server.create_database("mlflow", owner="mlflow")  # idempotent (every stack start)
    password_file = server.role_password_file("mlflow")
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.passfile.stat().st_mode) == 0o600
    with server.connect("postgres") as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, "
            "starts_with(rolpassword, 'SCRAM-SHA-256$') FROM pg_authid WHERE rolname = 'mlflow'"
        )
        assert cur.fetchone() == (False, False, False, False, False, True)
    uri = server.uri("mlflow", user="mlflow")
    assert uri.startswith("postgresql+psycopg2://mlflow@")
    done = subprocess.run(  # the mlflow CLI of this environment; the password from PGPASSFILE
        [str(Path(sys.executable).parent / "mlflow"), "db", "upgrade", uri],
        env={**os.environ, **server.client_env()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    conn = _as(server, "mlflow", "mlflow")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            assert cur.fetchone()[0] > 10  # MLflow's schema, created by the role
            cur.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
            assert cur.fetchall() == [("mlflow",)]
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("CREATE DATABASE other")
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("SELECT rolpassword FROM pg_authid")  # superusers only
    finally:
        conn.close()


def test_other_roles_cannot_connect_to_mlflows_database(server: PostgresServer) -> None:
    server.create_database("mlflow", owner="mlflow")
    server.create_database("other", owner="intruder")
    with pytest.raises(psycopg2.OperationalError, match="permission denied"):
        _as(server, "intruder", "mlflow")


def test_a_database_made_as_the_superuser_is_handed_over(server: PostgresServer) -> None:
    """A stack from before roles: its MLflow tables belong to the superuser."""
    server.create_database("legacy")
    with server.connect("legacy") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE runs (id serial PRIMARY KEY, name text)")
        cur.execute("CREATE SEQUENCE loose")
    server.create_database("legacy", owner="legacy")
    with _as(server, "legacy", "legacy") as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO runs (name) VALUES ('a') RETURNING id")
        assert cur.fetchone() == (1,)
        cur.execute("SELECT nextval('loose')")
        cur.execute("ALTER TABLE runs ADD COLUMN extra int")  # a migration: owner only
