"""SQL of the plugin's own database login (ADR 0076)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.kit.db import quote_ident as _ident
from plexica.plugins.repository.tenant_objects import role_exists


async def lock_plugin_login(session: AsyncSession, plugin_id: str) -> None:
    """Serialises the creation of a plugin's login between concurrent first installs."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('plexica.plugin_login.' || :p))"),
        {"p": plugin_id},
    )


async def get_plugin_login(session: AsyncSession, plugin_id: str) -> dict[str, Any] | None:
    row = (
        (
            await session.execute(
                text(
                    "SELECT plugin_id, role_name, password, created_at, rotated_at"
                    " FROM platform.plugin_logins WHERE plugin_id = :p"
                ),
                {"p": plugin_id},
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def create_plugin_login(
    session: AsyncSession, plugin_id: str, role: str, password: str
) -> None:
    # NOINHERIT: logged in, the plugin has no privilege at all until it sets the role of one
    # tenant where it is installed. The password is a URL-safe token, never user input.
    await session.execute(
        text(
            f"CREATE ROLE {_ident(role)} LOGIN NOINHERIT NOCREATEDB NOCREATEROLE"
            f" NOREPLICATION PASSWORD '{password}'"
        )
    )
    # Hardened databases revoke CONNECT from PUBLIC (the Helm chart does): grant it by name.
    database = (await session.execute(text("SELECT current_database()"))).scalar_one()
    await session.execute(text(f"GRANT CONNECT ON DATABASE {_ident(database)} TO {_ident(role)}"))
    await session.execute(
        text(
            "INSERT INTO platform.plugin_logins (plugin_id, role_name, password)"
            " VALUES (:p, :r, :pw) ON CONFLICT (plugin_id) DO UPDATE SET"
            " role_name = EXCLUDED.role_name, password = EXCLUDED.password, rotated_at = now()"
        ),
        {"p": plugin_id, "r": role, "pw": password},
    )


async def set_plugin_login_password(
    session: AsyncSession, plugin_id: str, role: str, password: str
) -> None:
    await session.execute(text(f"ALTER ROLE {_ident(role)} PASSWORD '{password}'"))
    await session.execute(
        text(
            "UPDATE platform.plugin_logins SET password = :pw, rotated_at = now()"
            " WHERE plugin_id = :p"
        ),
        {"p": plugin_id, "pw": password},
    )


async def set_login_membership(
    session: AsyncSession, tenant_role: str, login: str, *, member: bool
) -> None:
    """Let the plugin's login take its role in one tenant (SET ROLE only, never inherited)."""
    if member:
        await session.execute(
            text(f"GRANT {_ident(tenant_role)} TO {_ident(login)} WITH INHERIT FALSE, SET TRUE")
        )
    elif await role_exists(session, tenant_role):
        await session.execute(text(f"REVOKE {_ident(tenant_role)} FROM {_ident(login)}"))
