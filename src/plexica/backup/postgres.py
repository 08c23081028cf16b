"""The tenant schema through PostgreSQL's own tools: ``pg_dump`` writes it without owners or
grants; ``psql`` loads it as a throwaway role that owns only that schema, under the same or
another name. A database URL's password never appears on a command line."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url

from plexica.backup.archive import InvalidArchiveError
from plexica.kit.db import quote_ident
from plexica.kit.pgserver import PG_BIN
from plexica_sdk.errors import PlexicaError


class BackupError(PlexicaError):
    status, code = 500, "backup_failed"


def libpq(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def _without_password(cmd: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command with the database URL's password moved to ``PGPASSWORD``: a command line is
    readable by every local user (``ps``, ``/proc/<pid>/cmdline``)."""
    out, env = [], {}
    for arg in cmd:
        url = make_url(arg) if arg.startswith("postgresql://") else None
        if url is not None and url.password is not None:
            env["PGPASSWORD"] = str(url.password)
            out.append(url._replace(password=None).render_as_string(hide_password=False))
        else:
            out.append(arg)
    return out, env


def _run(
    cmd: list[str], *, stdout: IO[bytes] | None = None, env: dict[str, str] | None = None
) -> None:
    cmd, hidden = _without_password(cmd)
    done = subprocess.run(
        cmd,
        stdout=stdout or subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=3600,
        check=False,
        env={**os.environ, **hidden, **(env or {})},
    )
    if done.returncode != 0:
        raise BackupError(
            f"{Path(cmd[0]).name} failed: {done.stderr.decode(errors='replace')[-500:]}"
        )


def _psql(url: str, *args: str) -> list[str]:
    return [str(PG_BIN / "psql"), "-d", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", *args]


def schema_exists(url: str, schema: str) -> bool:
    quote_ident(schema)  # only our own identifiers reach the query below
    query = f"SELECT 1 FROM pg_namespace WHERE nspname = '{schema}'"  # noqa: S608
    cmd, hidden = _without_password(_psql(url, "-tAc", query))
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, check=True, env={**os.environ, **hidden}
    )
    return out.stdout.strip() == "1"


def dump_schema(url: str, schema: str, out: IO[bytes]) -> None:
    _run(
        [
            str(PG_BIN / "pg_dump"),
            "-d",
            url,
            "--schema",
            schema,
            "--no-owner",
            "--no-privileges",
            "--format",
            "plain",
        ],
        stdout=out,
    )


def drop_schema(url: str, schema: str) -> None:
    _run(_psql(url, "-c", f"DROP SCHEMA {quote_ident(schema)} CASCADE"))


def load_schema(url: str, tar: tarfile.TarFile, source_schema: str, schema: str) -> None:
    """Load the archive's schema logged in as a throwaway role that owns only that schema.

    The dump holds the plugins' SQL (functions, CHECK constraints, index expressions, generated
    columns), which loading it evaluates (``COPY`` checks every row): loaded by the platform's
    owner, a plugin's constraint would run as the owner (CREATEROLE, every tenant, the realm
    keys). The throwaway role logs in (no ``SET ROLE`` on a privileged session) with nothing
    but ``CONNECT`` and ``CREATE`` in the schema the owner made for it; the owner then takes
    over what the role made and drops the role. Under another name, the dump's statements (not
    its rows) name the new schema: the source tenant may still have its own."""
    member = tar.extractfile("schema.sql")
    if member is None:
        raise InvalidArchiveError("the archive has no schema.sql")
    role, password = "plexica_restore_" + secrets.token_hex(6), secrets.token_urlsafe(24)
    r, src = quote_ident(role), quote_ident(schema)
    database = quote_ident(make_url(url).database or "")
    with tempfile.NamedTemporaryFile(suffix=".sql") as sql:
        dump = _without_create_schema(member.read(), source_schema)
        sql.write(_renamed(dump, source_schema, schema) if schema != source_schema else dump)
        sql.flush()
        _run(
            _psql(
                url, "--single-transaction",
                "-c", f"CREATE ROLE {r} LOGIN NOINHERIT NOCREATEDB NOCREATEROLE NOREPLICATION"
                f" NOBYPASSRLS CONNECTION LIMIT 1 PASSWORD '{password}'",
                "-c", f"GRANT {r} TO CURRENT_USER WITH INHERIT TRUE, SET FALSE",
                "-c", f"GRANT CONNECT ON DATABASE {database} TO {r}",
                "-c", f"CREATE SCHEMA {src}",
                "-c", f"GRANT USAGE, CREATE ON SCHEMA {src} TO {r}",
            )
        )  # fmt: skip
        try:
            # The password goes in the environment, not in the command line (``ps``).
            role_url = make_url(url)._replace(username=role, password=None)
            _run(
                _psql(
                    role_url.render_as_string(hide_password=False),
                    "--single-transaction",
                    "-f",
                    sql.name,
                ),
                env={"PGPASSWORD": password},
            )
            # What the role made, the owner will own: no routine of it may run as the owner
            # (a plugin's role may have made its own SECURITY DEFINER at run time, and the
            # platform's functions are made again when a plugin is installed or restored).
            invoker = (
                "DO $$ DECLARE f regprocedure; BEGIN FOR f IN SELECT p.oid::regprocedure"  # noqa: S608
                " FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles o ON o.oid = p.proowner"
                f" WHERE o.rolname = '{role}' AND p.prosecdef LOOP"
                " EXECUTE pg_catalog.format('ALTER ROUTINE %s SECURITY INVOKER', f);"
                " END LOOP; END $$"
            )
            _run(
                _psql(
                    url, "--single-transaction", "-c", invoker,
                    "-c", f"REASSIGN OWNED BY {r} TO CURRENT_USER",
                    "-c", f"DROP OWNED BY {r}", "-c", f"DROP ROLE {r}",
                )
            )  # fmt: skip
        except BaseException:
            _run(
                _psql(
                    url, "--single-transaction",
                    "-c", f"DROP SCHEMA IF EXISTS {src} CASCADE",
                    "-c", f"DROP OWNED BY {r} CASCADE", "-c", f"DROP ROLE {r}",
                )
            )  # fmt: skip
            raise


def _renamed(dump: bytes, source: str, target: str) -> bytes:
    """``source.`` becomes ``target.`` in the dump's statements; the rows of its ``COPY`` blocks
    are left as they are. pg_dump names every object with its schema."""
    name = re.compile(rb'(?<![\w"$])' + re.escape(source.encode()) + rb"(?=\.)")
    out, copying = [], False
    for line in dump.split(b"\n"):
        if copying:
            copying = line != b"\\."
            out.append(line)
            continue
        if line.startswith(b"COPY ") and line.endswith(b"FROM stdin;"):
            copying = True
        out.append(name.sub(target.encode(), line))
    return b"\n".join(out)


def _without_create_schema(dump: bytes, schema: str) -> bytes:
    """The dump without its ``CREATE SCHEMA`` (the restore makes the schema for the role)."""
    quoted = quote_ident(schema)
    drop = {f"CREATE SCHEMA {schema};".encode(), f"CREATE SCHEMA {quoted};".encode()}
    lines = dump.split(b"\n")
    kept = [line for line in lines if line.strip() not in drop]
    if len(kept) == len(lines):
        raise InvalidArchiveError(f"schema.sql does not create schema {schema}")
    return b"\n".join(kept)
