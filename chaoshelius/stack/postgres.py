"""A real PostgreSQL server in a directory of our own: the local stack's "RDS".

`PostgresServer(data_dir, port).start()` runs `initdb` on first use, starts the server on
loopback only (no Unix socket), and waits until it accepts connections. PostgreSQL refuses to
run as root, so when the caller is root (CI is) the server runs as an unprivileged system user
(`helius-pg`, created with `useradd` on first use) through `runuser`; the data directory is
chowned to it and its parent directories get the search bit (`o+x`) so that user can reach it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg2
from psycopg2 import sql

from chaoshelius.stack.errors import ProcessStartError, StackError
from chaoshelius.stack.procs import LOOPBACK, ensure_port_free, pid_alive, wait_until

PG_USER = "helius-pg"  # OS user the server runs as when we are root
SUPERUSER = "postgres"  # database superuser created by initdb (trust auth on loopback)

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
            self._run(
                ["initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8"],
                timeout=120,
            )
            with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
                conf.write("\n# helius local stack\n")
                for key, value in _SETTINGS.items():
                    conf.write(f"{key} = {value}\n")
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

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (idempotent); raise `StackError` if the server is still running."""
        pid = self.pid
        if pid is None:
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
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            wait_until(lambda: not self._is_postmaster(pid), grace, 0.1)
        if self._is_postmaster(pid):
            raise StackError(f"PostgreSQL (pid {pid}) did not stop; see {self.log_path}")

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
            conn = psycopg2.connect(self.dsn("postgres"), connect_timeout=2)
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
        """libpq URI for psycopg2.connect (direct, not through a proxy)."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        """Create database `name` if it does not exist (idempotent)."""
        conn = psycopg2.connect(self.dsn("postgres"), connect_timeout=5)
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

    def _grant_traversal(self) -> None:
        """The server user must be able to traverse down to its data directory."""
        for parent in self.data_dir.parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)

    def _run(self, argv: list[str], timeout: float, check: bool = True) -> None:
        if self._as_root:
            argv = ["runuser", "-u", PG_USER, "--", *argv]
        try:
            done = subprocess.run(  # noqa: S603  argv list, no shell: PostgreSQL tools, our argv
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
        subprocess.run(  # noqa: S603  argv list, no shell: useradd of the fixed PG_USER
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(PG_USER)
    return entry.pw_uid, entry.pw_gid
