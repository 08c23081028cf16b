"""A plugin's migrations, run on a connection that logs in as the plugin's role for the tenant.

The platform never runs a plugin's SQL on a session of its own (ADR 0110): the role has no
privilege outside the tenant schema, is a member of no role, and the script runs inside one
``DO`` block, where PostgreSQL refuses ``COMMIT``/``ROLLBACK``, so the whole script, the check of
what it made and the plugin's readiness are one transaction of the role's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
from sqlalchemy.engine import URL

from plexica.plugins.repository import tenant_objects as objects_repo
from plexica.plugins.schemas import MigrationFile, MigrationRefusedError


def role_url(platform: URL, role: str, password: str) -> str:
    """The platform's server and database, logged in as the plugin's role."""
    url = platform.set(drivername="postgresql", username=role, password=password)
    return url.render_as_string(hide_password=False)


def wrapped(sql: str) -> str:
    """The script as one ``DO`` block: transaction control inside it is an error, and the
    dollar-quote tag is random, so the script cannot end the quoting (nor would it gain
    anything: it still runs as the role)."""
    while True:
        tag = "plx_" + secrets.token_hex(8)
        if tag not in sql:
            return f"DO ${tag}$ BEGIN EXECUTE ${tag}_q${sql}${tag}_q$; END ${tag}$"


async def migrate_as_role(
    *,
    platform_url: URL,
    role: str,
    password: str,
    schema: str,
    prefix: str,
    migrations: Sequence[MigrationFile],
    time_limit: float,
    before_commit: Callable[[], Awaitable[None]],
) -> list[str]:
    """Run ``migrations`` in one transaction of the role; commit only when what the role then
    owns passes the check and ``before_commit`` (the readiness probe) returns. Returns the
    names applied. Any failure raises ``MigrationRefusedError`` and leaves nothing committed."""
    try:
        conn = await asyncpg.connect(
            role_url(platform_url, role, password),
            timeout=min(time_limit, 30.0),
            statement_cache_size=0,
            server_settings={"application_name": "plexica-plugin-migration"},
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise MigrationRefusedError(
            f"cannot log in as the plugin's role: {_first_line(exc)}"
        ) from None
    committed = False
    try:
        applied: list[str] = []
        await conn.execute("BEGIN")
        for m in migrations:
            try:
                await conn.execute(wrapped(m.sql), timeout=time_limit)
            except TimeoutError:
                raise MigrationRefusedError(
                    f"migration {m.name} did not finish in {time_limit:g} s",
                    details={"migration": m.name},
                ) from None
            except asyncpg.PostgresError as exc:
                raise MigrationRefusedError(
                    f"migration {m.name} failed: {_first_line(exc)}",
                    details={"migration": m.name},
                ) from None
            if not conn.is_in_transaction():
                raise MigrationRefusedError(
                    f"migration {m.name} ended its transaction", details={"migration": m.name}
                )
            applied.append(m.name)
        try:
            problems = await objects_repo.owned_problems(conn, role, schema, prefix)
        except asyncpg.PostgresError as exc:
            raise MigrationRefusedError(f"migration refused: {_first_line(exc)}") from None
        if problems:
            raise MigrationRefusedError(
                f"migrations created objects outside the prefix {prefix!r}:"
                f" {', '.join(sorted(problems))}",
                details={"objects": sorted(problems)},
            )
        await before_commit()
        await conn.execute("COMMIT", timeout=time_limit)
        committed = True
        return applied
    finally:
        if committed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=5)
        else:
            # Never wait on a connection whose script may still run (a loop that catches the
            # cancel): drop it here; the platform ends the server's side and takes the locks.
            conn.terminate()


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:500]
