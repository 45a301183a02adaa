"""A real PostgreSQL server in a directory of our own: the local stack's "RDS".

`PostgresServer(data_dir, port).start()` runs `initdb` on first use, starts the server on
loopback only (no Unix socket), and waits until it accepts connections.

Authentication is scram-sha-256 for every connection: the superuser's password is random,
made at initdb and kept in `<data dir>/../password` (0600, the stack's user). Clients get it
without it ever appearing in a URI, an argv or a log: `PGPASSFILE` points libpq (psycopg2,
hence SQLAlchemy and MLflow) at `<data dir>/../pgpass` (0600, libpq refuses a looser one).

PostgreSQL refuses to run as root, so when the caller is root (CI is) the server runs as an
unprivileged system user (`helius-pg`, created with `useradd` on first use) through `runuser`;
the data directory is chowned to it, and the parent directories that lack the search bit get
`o+x` so that user can reach it. Each such change is recorded (`<data dir>/../granted-modes`)
and reverted when the server stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg2
from psycopg2 import sql

from chaoshelius.stack.errors import ProcessStartError, StackError
from chaoshelius.stack.procs import LOOPBACK, ensure_port_free, pid_alive, wait_until
from chaoshelius.stack.state import write_private

PG_USER = "helius-pg"  # OS user the server runs as when we are root
SUPERUSER = "postgres"  # database superuser created by initdb (scram-sha-256, random password)

_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "fsync": "off",  # a disposable test database: durability is not the point
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "log_min_messages": "warning",
}


class PostgresServer:
    """One PostgreSQL cluster: `start()`, `stop()`, `create_database()`, `uri()`."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        host: str = LOOPBACK,
        log_path: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.host = host
        self.log_path = (log_path or self.data_dir.parent / "postgres.log").resolve()
        self._as_root = os.geteuid() == 0

    # -- the password ----------------------------------------------------------------------
    @property
    def password_file(self) -> Path:
        return self.data_dir.parent / "password"

    @property
    def passfile(self) -> Path:
        """libpq's password file (`PGPASSFILE`), for any client on loopback."""
        return self.data_dir.parent / "pgpass"

    @property
    def password(self) -> str:
        try:
            return self.password_file.read_text(encoding="ascii").strip()
        except OSError as exc:
            raise StackError(
                f"the PostgreSQL password file {self.password_file} is missing: delete "
                f"{self.data_dir} to recreate the database"
            ) from exc

    def client_env(self) -> dict[str, str]:
        """Environment that lets a libpq client (MLflow) log in: the password stays in a file."""
        return {"PGPASSFILE": str(self.passfile)}

    def _new_password(self) -> str:
        password = secrets.token_urlsafe(24)
        write_private(self.password_file, password + "\n")
        write_private(self.passfile, f"{self.host}:*:*:{SUPERUSER}:{password}\n")
        return password

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        """initdb if needed, start the server, wait until it accepts connections."""
        if self.is_running():
            if self.accepts_connections():
                return
            self.stop()
        ensure_port_free(self.port, "PostgreSQL")
        self._prepare_dirs()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        elif not self.password_file.exists():
            raise StackError(
                f"{self.data_dir} was created with trust authentication by an older version: "
                f"delete {self.data_dir.parent} (the database of this stack) and start again"
            )
        self._write_hba()
        self._run(
            [
                "pg_ctl",
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-o",
                f"-p {self.port} -c listen_addresses={self.host}",
                "-W",
            ],
            timeout=30,
        )
        deadline = time.monotonic() + timeout
        while not self.accepts_connections():
            if time.monotonic() > deadline:
                raise ProcessStartError(
                    f"PostgreSQL did not accept connections on {self.host}:{self.port} within "
                    f"{timeout:.0f} s; see {self.log_path}"
                )
            time.sleep(0.1)

    def _initdb(self) -> None:
        """initdb with scram-sha-256 and a random superuser password (passed in a file that
        only the server user can read, removed right after)."""
        password = self._new_password()
        pwfile = self.data_dir.parent / ".initdb-pwfile"
        write_private(pwfile, password + "\n")
        try:
            if self._as_root:
                uid, gid = _ensure_pg_user()
                os.chown(pwfile, uid, gid)
            self._run(
                [
                    "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "-E", "UTF8",
                    "--auth=scram-sha-256", f"--pwfile={pwfile}",
                ],
                timeout=120,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# helius local stack\n")
            for key, value in _SETTINGS.items():
                conf.write(f"{key} = {value}\n")

    def _write_hba(self) -> None:
        """Only password logins over loopback TCP (no trust line, no socket, no replication)."""
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(
            "# helius local stack: scram-sha-256 over loopback only\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host all all ::1/128 scram-sha-256\n",
            encoding="utf-8",
        )
        if self._as_root:
            uid, gid = _ensure_pg_user()
            os.chown(hba, uid, gid)
        hba.chmod(0o600)

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (idempotent); raise `StackError` if the server is still running.
        Directory modes granted for the server user are restored once it is down."""
        pid = self.pid
        if pid is None:
            self._revert_traversal()
            return
        if self._as_root:
            # a parent may have lost its search bit since start (pytest resets its temp root to
            # 0700 when a new session starts): without it pg_ctl cannot reach the data directory
            self._grant_traversal()
        self._run(
            ["pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-t", str(int(timeout))],
            timeout=timeout + 5,
            check=False,
        )
        # pg_ctl failed (its error is in its exit status only): signal the postmaster as pg_ctl
        # would, fast shutdown first, then immediate shutdown
        for sig, grace in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0)):
            if not self._is_postmaster(pid):
                break
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            wait_until(lambda: not self._is_postmaster(pid), grace, 0.1)
        if self._is_postmaster(pid):
            raise StackError(f"PostgreSQL (pid {pid}) did not stop; see {self.log_path}")
        self._revert_traversal()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- state -----------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The postmaster's pid, from postmaster.pid, if it is alive."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (FileNotFoundError, ValueError, PermissionError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid is not None

    def _is_postmaster(self, pid: int) -> bool:
        """True if `pid` is a live server of this data directory (not a reused pid)."""
        if not pid_alive(pid):
            return False
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return str(self.data_dir).encode() in argv

    def accepts_connections(self) -> bool:
        try:
            conn = self.connect("postgres", timeout=2)
        except psycopg2.OperationalError:
            return False
        conn.close()
        return True

    # -- databases ---------------------------------------------------------------------------
    def uri(self, database: str, port: int | None = None) -> str:
        """SQLAlchemy URI (psycopg2 driver); `port` routes through another port (a path proxy).

        The driver is explicit because SQLAlchemy 2.1 defaults `postgresql://` to psycopg 3.
        """
        return f"postgresql+psycopg2://{SUPERUSER}@{self.host}:{port or self.port}/{database}"

    def dsn(self, database: str) -> str:
        """libpq URI for psycopg2.connect (direct, not through a proxy; no password in it)."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def connect(self, database: str, timeout: int = 5) -> Any:
        """A direct psycopg2 connection as the superuser."""
        return psycopg2.connect(self.dsn(database), password=self.password, connect_timeout=timeout)

    def create_database(self, name: str) -> None:
        """Create database `name` if it does not exist (idempotent)."""
        conn = self.connect("postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()

    # -- internals ---------------------------------------------------------------------------
    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch(exist_ok=True)
        if not self._as_root:
            return
        uid, gid = _ensure_pg_user()
        for path in (self.data_dir, self.log_path):
            os.chown(path, uid, gid)
        for child in self.data_dir.rglob("*"):
            os.chown(child, uid, gid, follow_symlinks=False)
        self._grant_traversal()

    @property
    def _granted_file(self) -> Path:
        return self.data_dir.parent / "granted-modes"

    def _grant_traversal(self) -> None:
        """The server user must be able to traverse down to its data directory and its log:
        add `o+x` where it is missing, and record each change (with the mode before) to
        revert it."""
        granted = self._granted()
        parents = dict.fromkeys([*self.data_dir.parents, *self.log_path.parents])
        for parent in parents:
            mode = parent.stat().st_mode & 0o7777
            if not mode & 0o001:
                parent.chmod(mode | 0o001)
                granted.setdefault(str(parent), mode)
        if granted:
            write_private(self._granted_file, json.dumps(granted))

    def _granted(self) -> dict[str, int]:
        try:
            data = json.loads(self._granted_file.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _revert_traversal(self) -> None:
        """Give back the modes `_grant_traversal` changed, where nobody changed them since."""
        for path, before in self._granted().items():
            with contextlib.suppress(OSError):
                current = Path(path).stat().st_mode & 0o7777
                if current == before | 0o001:
                    Path(path).chmod(before)
        self._granted_file.unlink(missing_ok=True)

    def _run(self, argv: list[str], timeout: float, check: bool = True) -> None:
        if self._as_root:
            argv = ["runuser", "-u", PG_USER, "--", *argv]
        try:
            done = subprocess.run(
                argv,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise StackError(
                f"{argv[0]} not found: install PostgreSQL (apt-get install postgresql) and put "
                f"its bin directory on PATH"
            ) from exc
        if check and done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace").strip()
            raise ProcessStartError(
                f"{' '.join(argv)} failed ({done.returncode}): {output[-800:]}; see {self.log_path}"
            )


def _ensure_pg_user() -> tuple[int, int]:
    """uid/gid of the unprivileged user PostgreSQL runs as when we are root."""
    try:
        entry = pwd.getpwnam(PG_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(PG_USER)
    return entry.pw_uid, entry.pw_gid
