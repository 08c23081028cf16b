"""The plugin's own database login (ADR 0076): one per plugin, a member of the plugin's role in
each tenant where the plugin is active."""

from __future__ import annotations

import secrets

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.events import service as events_service
from plexica.plugins.repository import installations as installs_repo
from plexica.plugins.repository import logins as logins_repo
from plexica.plugins.repository import tenant_objects as objects_repo
from plexica.plugins.schemas import InstallStatus, PluginLogin

log = structlog.get_logger("plexica.plugins")


def new_password() -> str:
    return secrets.token_urlsafe(32)


async def ensure_login(session: AsyncSession, plugin_id: str, *, sync: bool = False) -> PluginLogin:
    """The plugin's login, created on first use. A new login (or ``sync``) is made a member of
    the plugin's role in every tenant where the plugin is active, and of no other."""
    row = await logins_repo.get_plugin_login(session, plugin_id)
    created = False
    if row is None or not await objects_repo.role_exists(session, row["role_name"]):
        await logins_repo.lock_plugin_login(session, plugin_id)
        row = await logins_repo.get_plugin_login(session, plugin_id)
        if row is None or not await objects_repo.role_exists(session, row["role_name"]):
            # Roles are global to the server: a suffix keeps two deployments sharing one apart.
            role = f"plx_{plugin_id}_login_{secrets.token_hex(4)}"
            await logins_repo.create_plugin_login(session, plugin_id, role, new_password())
            await events_service.allow_plugin_login(session, role)
            row = await logins_repo.get_plugin_login(session, plugin_id)
            assert row is not None
            created = True
            log.info("plugin_login_created", plugin=plugin_id, role=role)
    if created or sync:
        for inst in await installs_repo.list_installations(session):
            if inst["plugin_id"] == plugin_id and await objects_repo.role_exists(
                session, inst["db_role"]
            ):
                await logins_repo.set_login_membership(
                    session,
                    inst["db_role"],
                    row["role_name"],
                    member=inst["status"] == InstallStatus.ACTIVE,
                )
    return PluginLogin(plugin_id=plugin_id, role=row["role_name"], password=row["password"])


async def rotate_login(session: AsyncSession, plugin_id: str) -> PluginLogin:
    """A new password for the plugin's login; the old one stops working at commit."""
    login = await ensure_login(session, plugin_id)
    password = new_password()
    await logins_repo.set_plugin_login_password(session, plugin_id, login.role, password)
    log.info("plugin_login_rotated", plugin=plugin_id, role=login.role)
    return PluginLogin(plugin_id=plugin_id, role=login.role, password=password)


async def login_membership(
    session: AsyncSession, plugin_id: str, tenant_role: str, *, active: bool
) -> None:
    login = await logins_repo.get_plugin_login(session, plugin_id)
    if login is not None and await objects_repo.role_exists(session, login["role_name"]):
        await logins_repo.set_login_membership(
            session, tenant_role, login["role_name"], member=active
        )
