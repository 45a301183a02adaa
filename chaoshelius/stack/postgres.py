"""A real PostgreSQL server in a directory of our own: the local stack's "RDS".

`PostgresServer(data_dir, port).start()` runs `initdb` on first use, starts the server on
loopback only (no Unix socket), and waits until it accepts connections.

Authentication is scram-sha-256 for every connection: the superuser's password is random,
made at initdb and kept in `<data dir>/../password` (0600, the stack's user). Clients get it
without it ever appearing in a URI, an argv or a log: `PGPASSFILE` points libpq (psycopg2,
hence SQLAlchemy and MLflow) at `<data dir>/../pgpass` (0600, libpq refuses a looser one).

PostgreSQL refuses to run as root, so when the caller is root (CI is) the server runs as an
unprivileged system user (`helius-pg`, created with `useradd` on first use) through `runuser`.
That user must reach its data directory and its log for as long as the server runs (a
checkpoint opens `global/pg_control` by absolute path), so, as root, both live in a directory
that needs no mode change on anyone's path: `/var/lib/helius-pg/<hash of the data dir asked
for>/` (`HELIUS_PG_HOME` moves it), owned by `helius-pg`, 0700. The state directory keeps the
password files and a symlink to the log; it stays 0700, and so do its parents (granting `o+x`
on them, as before, did not hold: pytest strips it from `/tmp/pytest-of-root` at every new
session, and the server then died at its next checkpoint). A cluster whose state directory is
gone is deleted at the next start of any other.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg2
from psycopg2 import sql

from chaoshelius.stack.errors import ProcessStartError, StackError
from chaoshelius.stack.procs import LOOPBACK, ensure_port_free, pid_alive, wait_until
from chaoshelius.stack.state import private_dir, write_private

log = logging.getLogger(__name__)

PG_USER = "helius-pg"  # OS user the server runs as when we are root
PG_HOME_ENV = "HELIUS_PG_HOME"
PG_HOME_DEFAULT = Path("/var/lib/helius-pg")  # as root: every cluster lives below, by hash
_OWNER_FILE = "owner"  # in a cluster's home: the data directory it was asked for
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
        self.requested_data_dir = Path(data_dir).resolve()
        self.port = port
        self.host = host
        self.log_path = (log_path or self.requested_data_dir.parent / "postgres.log").resolve()
        self._as_root = os.geteuid() == 0
        self._secrets_dir = self.requested_data_dir.parent  # the caller's: password files
        if self._as_root:
            key = hashlib.sha256(str(self.requested_data_dir).encode()).hexdigest()[:16]
            self.home: Path | None = pg_home() / key
            self.data_dir = self.home / "data"
            self.server_log = self.home / "postgres.log"  # `log_path` is a symlink to it
        else:
            self.home = None
            self.data_dir = self.requested_data_dir
            self.server_log = self.log_path

    # -- the password ----------------------------------------------------------------------
    @property
    def password_file(self) -> Path:
        return self._secrets_dir / "password"

    @property
    def passfile(self) -> Path:
        """libpq's password file (`PGPASSFILE`), for any client on loopback."""
        return self._secrets_dir / "pgpass"

    @property
    def password(self) -> str:
        try:
            return self.password_file.read_text(encoding="ascii").strip()
        except OSError as exc:
            raise StackError(
                f"the PostgreSQL password file {self.password_file} is missing: delete "
                f"{self.requested_data_dir.parent} to recreate the database"
            ) from exc

    def role_password_file(self, role: str) -> Path:
        """The password of a login role made by `create_database(owner=role)` (0600)."""
        return self._secrets_dir / f"password-{role}"

    def _write_passfile(self) -> None:
        """pgpass: the superuser's line and one per role made here (libpq picks by user)."""
        lines = [f"{self.host}:*:*:{SUPERUSER}:{self.password}"]
        for path in sorted(self._secrets_dir.glob("password-*")):
            role = path.name.removeprefix("password-")
            lines.append(f"{self.host}:*:*:{role}:{path.read_text(encoding='ascii').strip()}")
        write_private(self.passfile, "\n".join(lines) + "\n")

    def client_env(self) -> dict[str, str]:
        """Environment that lets a libpq client (MLflow) log in: the password stays in a file."""
        return {"PGPASSFILE": str(self.passfile)}

    def _new_password(self) -> str:
        password = secrets.token_urlsafe(24)
        write_private(self.password_file, password + "\n")
        for stale in self._secrets_dir.glob("password-*"):  # roles of a former cluster
            stale.unlink()
        self._write_passfile()
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
        elif not self.password_file.exists() and self._as_root:
            # a cluster below /var/lib/helius-pg that outlived its stack's state dir (deleted,
            # then made again at the same path, e.g. a new clone): its password went with the
            # state dir, so nothing can log in to it; it holds no other data: start it afresh
            log.warning(
                "PostgreSQL cluster %s lost its password file: re-creating it", self.data_dir
            )
            shutil.rmtree(self.data_dir)
            self._prepare_dirs()
            self._initdb()
        elif not self.password_file.exists():
            raise StackError(
                f"{self.data_dir} has no password file ({self.password_file}): it was created "
                f"with trust authentication by an older version; delete "
                f"{self.requested_data_dir.parent} (the database of this stack) and start again"
            )
        self._write_hba()
        self._run(
            [
                "pg_ctl",
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.server_log),
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
        pwfile = (self.home or self._secrets_dir) / ".initdb-pwfile"
        if self.home is not None:  # as root: in the server user's directory, never via a link
            uid, gid = _ensure_pg_user()
            with self._dir_fd(self.home) as home_fd:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(pwfile.name, dir_fd=home_fd)
                _write_beneath(home_fd, pwfile.name, password + "\n", uid, gid, exclusive=True)
        else:
            write_private(pwfile, password + "\n")
        try:
            self._run(
                [
                    "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "-E", "UTF8",
                    "--auth=scram-sha-256", f"--pwfile={pwfile}",
                ],
                timeout=120,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        settings = "\n# helius local stack\n" + "".join(
            f"{k} = {v}\n" for k, v in _SETTINGS.items()
        )
        if self.home is not None:
            uid, gid = _ensure_pg_user()
            with self._dir_fd(self.data_dir) as data_fd:
                _write_beneath(data_fd, "postgresql.conf", settings, uid, gid, append=True)
        else:
            with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
                conf.write(settings)

    def _write_hba(self) -> None:
        """Only password logins over loopback TCP (no trust line, no socket, no replication)."""
        hba = self.data_dir / "pg_hba.conf"
        text = (
            "# helius local stack: scram-sha-256 over loopback only\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host all all ::1/128 scram-sha-256\n"
        )
        if self.home is not None:  # as root: never through a link the server user planted
            uid, gid = _ensure_pg_user()
            with self._dir_fd(self.data_dir) as data_fd:
                _write_beneath(data_fd, hba.name, text, uid, gid)
            return
        hba.write_text(text, encoding="utf-8")
        hba.chmod(0o600)

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (idempotent); raise `StackError` if the server is still running."""
        pid = self.pid
        if pid is None:
            return
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
    def uri(self, database: str, port: int | None = None, user: str = SUPERUSER) -> str:
        """SQLAlchemy URI (psycopg2 driver); `port` routes through another port (a path proxy);
        `user`: a role made by `create_database(owner=...)` (its password is in pgpass).

        The driver is explicit because SQLAlchemy 2.1 defaults `postgresql://` to psycopg 3.
        """
        return f"postgresql+psycopg2://{user}@{self.host}:{port or self.port}/{database}"

    def dsn(self, database: str) -> str:
        """libpq URI for psycopg2.connect (direct, not through a proxy; no password in it)."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def connect(self, database: str, timeout: int = 5) -> Any:
        """A direct psycopg2 connection as the superuser."""
        return psycopg2.connect(self.dsn(database), password=self.password, connect_timeout=timeout)

    def create_database(self, name: str, owner: str | None = None) -> None:
        """Create database `name` if it does not exist (idempotent). With `owner`: a login role
        of that name (not a superuser, no CREATEDB/CREATEROLE; scram password in
        `role_password_file(owner)`, 0600, and in pgpass) owns the database and everything in
        its public schema, and PUBLIC may not connect: the role can do what MLflow needs there
        (create and migrate its tables) and nothing in the cluster beyond it. A database made
        by an older version (owned by the superuser) is handed over to the role."""
        conn = self.connect("postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                if owner is not None:
                    self._ensure_role(cur, owner)
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                if owner is not None:
                    ident = sql.Identifier(name), sql.Identifier(owner)
                    cur.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(*ident))
                    cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident[0]))
        finally:
            conn.close()
        if owner is not None:
            self._hand_over_objects(name, owner)

    def _ensure_role(self, cur: Any, role: str) -> None:
        path = self.role_password_file(role)
        if not path.exists():
            write_private(path, secrets.token_urlsafe(24) + "\n")
        password = path.read_text(encoding="ascii").strip()
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        verb = "ALTER" if cur.fetchone() is not None else "CREATE"
        cur.execute(
            sql.SQL(
                "{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
                "PASSWORD %s"
            ).format(sql.SQL(verb), sql.Identifier(role)),
            (password,),  # hashed with scram-sha-256 (password_encryption) by the server
        )
        self._write_passfile()

    def _hand_over_objects(self, database: str, owner: str) -> None:
        """The public schema's tables, views and sequences to `owner` (a database that MLflow
        migrated as the superuser before roles existed; none on a fresh one)."""
        conn = self.connect(database)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                for kinds, what in ((("r", "p", "v", "m"), "TABLE"), (("S",), "SEQUENCE")):
                    cur.execute(
                        "SELECT c.relname FROM pg_class c JOIN pg_namespace n "
                        "ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
                        "AND c.relkind = ANY(%s) AND pg_get_userbyid(c.relowner) <> %s",
                        (list(kinds), owner),
                    )
                    for (relation,) in cur.fetchall():
                        cur.execute(
                            sql.SQL("ALTER {} public.{} OWNER TO {}").format(
                                sql.SQL(what), sql.Identifier(relation), sql.Identifier(owner)
                            )
                        )
        finally:
            conn.close()

    # -- internals ---------------------------------------------------------------------------
    def _prepare_dirs(self) -> None:
        private_dir(self._secrets_dir)  # the password files live here
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if not self._as_root:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.data_dir.chmod(0o700)
            self.log_path.touch(exist_ok=True)
            return
        assert self.home is not None  # noqa: S101  narrows the type for mypy
        uid, gid = _ensure_pg_user()
        _collect_orphans(self.home.parent)
        # Root works below directories the server user owns (it could plant links there): each
        # one is opened from the root-owned anchor a component at a time with O_NOFOLLOW, and
        # every file is written and chowned through its descriptor (never by path).
        self.home.parent.parent.mkdir(parents=True, exist_ok=True)
        for directory in (self.home.parent, self.home, self.data_dir):
            with self._dir_fd(directory.parent) as parent_fd:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(directory.name, 0o700, dir_fd=parent_fd)
            with self._dir_fd(directory) as fd:
                os.fchown(fd, uid, gid)
                os.fchmod(fd, 0o700)
        with self._dir_fd(self.home) as home_fd:
            _write_beneath(home_fd, _OWNER_FILE, str(self.requested_data_dir), 0, 0)
            _write_beneath(home_fd, self.server_log.name, "", uid, gid, append=True)
        with self._dir_fd(self.data_dir) as data_fd:
            for _root, dirs, files, root_fd in os.fwalk(dir_fd=data_fd, follow_symlinks=False):
                for name in dirs + files:
                    os.chown(name, uid, gid, dir_fd=root_fd, follow_symlinks=False)
        if self.log_path.is_symlink() or self.log_path.exists():
            if self.log_path.resolve() == self.server_log:
                return
            self.log_path.unlink()
        self.log_path.symlink_to(self.server_log)  # the stack's logs/ shows the server's log

    def _open_dir(self, directory: Path) -> int:
        """An fd of `directory` (below the PG home's root-owned parent), opened one component
        at a time without following a symlink: the server user owns what is below."""
        assert self.home is not None  # noqa: S101  only as root
        anchor = self.home.parent.parent
        fd = os.open(anchor, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # root's: trusted
        try:
            for name in directory.relative_to(anchor).parts:
                try:
                    inner = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    raise StackError(
                        f"{directory}: a part of it is a symlink or not a directory "
                        f"({exc.strerror}); the PostgreSQL set-up (as root) follows no link "
                        f"below {anchor}: delete {self.home} and start again"
                    ) from exc
                os.close(fd)
                fd = inner
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextlib.contextmanager
    def _dir_fd(self, directory: Path) -> Iterator[int]:
        fd = self._open_dir(directory)
        try:
            yield fd
        finally:
            os.close(fd)

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


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _write_beneath(
    dir_fd: int,
    name: str,
    text: str,
    uid: int,
    gid: int,
    append: bool = False,
    exclusive: bool = False,
) -> None:
    """Write file `name` in the directory `dir_fd` as root, 0600, owned by uid:gid: opened with
    O_NOFOLLOW (a planted symlink is refused, not followed) and refused when it has other hard
    links (a planted link to a file elsewhere); owner and mode set through the descriptor."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    flags |= os.O_APPEND if append else (os.O_EXCL if exclusive else 0)  # truncated below
    try:
        fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        raise StackError(
            f"{name} in the PostgreSQL home could not be opened without following a link "
            f"({exc.strerror}): delete the PostgreSQL home (HELIUS_PG_HOME) and start again"
        ) from exc
    try:
        info = os.fstat(fd)
        if info.st_nlink != 1 or not stat.S_ISREG(info.st_mode):
            raise StackError(
                f"{name} in the PostgreSQL home has other hard links or is not a file: "
                "refusing to write it; delete the PostgreSQL home (HELIUS_PG_HOME) and start again"
            )
        if not append:
            os.ftruncate(fd, 0)  # only now: the checks above come before any change
        os.fchown(fd, uid, gid)
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def pg_home() -> Path:
    """Where clusters live when we are root (`HELIUS_PG_HOME`, default /var/lib/helius-pg)."""
    return Path(os.environ.get(PG_HOME_ENV) or PG_HOME_DEFAULT)


def _collect_orphans(home_root: Path) -> None:
    """Delete the clusters whose state directory is gone (none of them is running)."""
    if not home_root.is_dir():
        return
    for home in home_root.iterdir():
        try:  # never through a link the server user planted (it owns `home`)
            fd = os.open(home / _OWNER_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, encoding="utf-8") as owner_file:
                owner = Path(owner_file.read(4096).strip())
        except OSError:
            continue
        if owner.parent.exists() or (home / "data" / "postmaster.pid").exists():
            continue
        shutil.rmtree(home, ignore_errors=True)


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
