"""As root, the PostgreSQL set-up writes and chowns below directories that the server's user
(`helius-pg`) owns: a link planted there must be refused, never followed (issue 17, item 6).
Otherwise a compromised server user gets root to chown or overwrite any file (e.g. take
/etc/shadow). Each test plants what that user could plant, then runs root's set-up steps of a
real `PostgresServer` and checks the victim file or directory is untouched. No server runs."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from chaoshelius.stack.errors import StackError
from chaoshelius.stack.postgres import PG_HOME_ENV, PostgresServer

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="root's side of the set-up: only as root does the server run as another user",
)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PostgresServer:
    monkeypatch.setenv(PG_HOME_ENV, str(tmp_path / "pg-home"))
    pg = PostgresServer(tmp_path / "state" / "postgres" / "data", port=1)
    pg._prepare_dirs()  # the server user's home and data dir exist, as after a first start
    assert pg.home is not None
    return pg


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"  # stands for /etc/shadow: root's, 0600
    path.write_text("precious\n")
    path.chmod(0o600)
    return path


def _untouched(path: Path, mode: int, text: str | None = None) -> None:
    info = path.lstat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, mode), path
    if text is not None:
        assert path.read_text() == text


def _root_side(step: Callable[[], None]) -> None:
    """Run one of root's steps: refusing (StackError) or not following are both fine."""
    with contextlib.suppress(StackError):
        step()


def test_a_log_symlinked_to_a_root_file_is_not_chowned(
    server: PostgresServer, victim: Path
) -> None:
    server.server_log.unlink()
    server.server_log.symlink_to(victim)
    _root_side(server._prepare_dirs)
    _untouched(victim, 0o600, "precious\n")


def test_pg_hba_symlinked_to_a_root_file_is_not_overwritten(
    server: PostgresServer, victim: Path
) -> None:
    (server.data_dir / "pg_hba.conf").symlink_to(victim)
    _root_side(server._write_hba)
    _untouched(victim, 0o600, "precious\n")


def test_the_owner_file_symlinked_to_a_root_file_is_not_overwritten(
    server: PostgresServer, victim: Path
) -> None:
    assert server.home is not None
    (server.home / "owner").unlink()
    (server.home / "owner").symlink_to(victim)
    _root_side(server._prepare_dirs)
    _untouched(victim, 0o600, "precious\n")


def test_a_data_dir_symlinked_to_a_root_directory_is_not_chowned(
    server: PostgresServer, tmp_path: Path
) -> None:
    target = tmp_path / "root-dir"  # stands for /etc
    target.mkdir(mode=0o755)
    target.chmod(0o755)
    (target / "passwd").write_text("root:x:0:0\n")
    (target / "passwd").chmod(0o644)
    server.data_dir.rmdir()
    server.data_dir.symlink_to(target)
    _root_side(server._prepare_dirs)
    _untouched(target, 0o755)
    _untouched(target / "passwd", 0o644)


def test_a_hard_link_to_a_root_file_is_not_written(server: PostgresServer, victim: Path) -> None:
    (server.data_dir / "pg_hba.conf").unlink(missing_ok=True)
    os.link(victim, server.data_dir / "pg_hba.conf")
    _root_side(server._write_hba)
    _untouched(victim, 0o600, "precious\n")


def test_the_set_up_still_works_without_planted_links(server: PostgresServer) -> None:
    server._prepare_dirs()
    server._write_hba()
    hba = server.data_dir / "pg_hba.conf"
    assert "scram-sha-256" in hba.read_text()
    assert stat.S_IMODE(hba.stat().st_mode) == 0o600
    assert hba.stat().st_uid == server.data_dir.stat().st_uid != 0
