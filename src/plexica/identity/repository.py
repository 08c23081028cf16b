"""SQL of the built-in identity provider and the realm registry (platform schema)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from plexica_sdk.db import fetch_all, fetch_first, returns_row

# --- realms ---------------------------------------------------------------------------------


async def upsert_realm(session: AsyncSession, name: str, tenant_id: UUID | None) -> None:
    await session.execute(
        text(
            "INSERT INTO platform.realms (name, tenant_id) VALUES (:name, :tenant_id)"
            " ON CONFLICT (name) DO NOTHING"
        ),
        {"name": name, "tenant_id": tenant_id},
    )


async def get_realm(session: AsyncSession, name: str) -> dict[str, Any] | None:
    return await fetch_first(
        session,
        text("SELECT name, tenant_id, enabled FROM platform.realms WHERE name = :name"),
        {"name": name},
    )


async def list_realms(session: AsyncSession) -> list[dict[str, Any]]:
    return await fetch_all(session, text("SELECT name, tenant_id, enabled FROM platform.realms"))


async def delete_realm(session: AsyncSession, name: str) -> None:
    await session.execute(text("DELETE FROM platform.realms WHERE name = :name"), {"name": name})


async def set_realm_enabled(session: AsyncSession, name: str, enabled: bool) -> None:
    await session.execute(
        text("UPDATE platform.realms SET enabled = :enabled WHERE name = :name"),
        {"name": name, "enabled": enabled},
    )


async def lock_realm(session: AsyncSession, realm: str) -> None:
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('plexica.realm:' || :realm))"),
        {"realm": realm},
    )


# --- users ----------------------------------------------------------------------------------

_USER_COLUMNS = "id, realm, email, password_hash, enabled, roles"


async def insert_user(
    session: AsyncSession,
    user_id: UUID,
    *,
    realm: str,
    email: str,
    password_hash: str | None,
    roles: Iterable[str],
    enabled: bool = True,
) -> bool:
    return await returns_row(
        session,
        text(
            "INSERT INTO platform.users (id, realm, email, password_hash, roles, enabled)"
            " VALUES (:id, :realm, :email, :hash, :roles, :enabled)"
            " ON CONFLICT (realm, email) DO NOTHING RETURNING id"
        ),
        {
            "id": user_id,
            "realm": realm,
            "email": email,
            "hash": password_hash,
            "roles": list(roles),
            "enabled": enabled,
        },
    )


async def delete_user(session: AsyncSession, realm: str, user_id: UUID) -> None:
    await session.execute(
        text("DELETE FROM platform.users WHERE realm = :realm AND id = :id"),
        {"realm": realm, "id": user_id},
    )


_USERS_OF_REALM = f"SELECT {_USER_COLUMNS} FROM platform.users WHERE realm = :realm"  # noqa: S608 - constant


async def user_by_email(session: AsyncSession, realm: str, email: str) -> dict[str, Any] | None:
    return await fetch_first(
        session, text(_USERS_OF_REALM + " AND email = :email"), {"realm": realm, "email": email}
    )


async def user_by_id(session: AsyncSession, realm: str, user_id: UUID) -> dict[str, Any] | None:
    return await fetch_first(
        session, text(_USERS_OF_REALM + " AND id = :id"), {"realm": realm, "id": user_id}
    )


async def list_users(session: AsyncSession, realm: str) -> list[dict[str, Any]]:
    return await fetch_all(session, text(_USERS_OF_REALM + " ORDER BY email"), {"realm": realm})


async def count_users(session: AsyncSession, realm: str) -> int:
    row = await session.execute(
        text("SELECT count(*) FROM platform.users WHERE realm = :realm"), {"realm": realm}
    )
    return int(row.scalar_one())


async def update_user(session: AsyncSession, user_id: UUID, **values: Any) -> None:
    allowed = {"enabled", "roles", "password_hash"}
    assert set(values) <= allowed
    assignments = ", ".join(f"{k} = :{k}" for k in values)
    await session.execute(
        text(f"UPDATE platform.users SET {assignments} WHERE id = :id"),  # noqa: S608 - allowed keys
        {"id": user_id, **values},
    )


# --- clients --------------------------------------------------------------------------------


async def upsert_client(
    session: AsyncSession,
    realm: str,
    client_id: str,
    *,
    public: bool,
    secret_hash: str | None,
    redirect_uris: Iterable[str],
    roles: Iterable[str],
) -> None:
    await session.execute(
        text(
            "INSERT INTO platform.clients (realm, client_id, public, secret_hash, redirect_uris,"
            " roles) VALUES (:realm, :client_id, :public, :secret_hash, :redirect_uris, :roles)"
            " ON CONFLICT (realm, client_id) DO UPDATE SET public = EXCLUDED.public,"
            " secret_hash = EXCLUDED.secret_hash, redirect_uris = EXCLUDED.redirect_uris,"
            " roles = EXCLUDED.roles"
        ),
        {
            "realm": realm,
            "client_id": client_id,
            "public": public,
            "secret_hash": secret_hash,
            "redirect_uris": list(redirect_uris),
            "roles": list(roles),
        },
    )


async def get_client(session: AsyncSession, realm: str, client_id: str) -> dict[str, Any] | None:
    return await fetch_first(
        session,
        text(
            "SELECT realm, client_id, public, secret_hash, redirect_uris, roles, enabled"
            " FROM platform.clients WHERE realm = :realm AND client_id = :client_id"
        ),
        {"realm": realm, "client_id": client_id},
    )


async def add_redirect_uri(session: AsyncSession, client_id: str, uri: str) -> int:
    """Add ``uri`` to the client ``client_id`` of every realm that lacks it; the count added."""
    result = await session.execute(
        text(
            "UPDATE platform.clients SET redirect_uris = array_append(redirect_uris, :uri)"
            " WHERE client_id = :client_id AND NOT (:uri = ANY(redirect_uris))"
        ),
        {"client_id": client_id, "uri": uri},
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def client_exists(session: AsyncSession, realm: str, client_id: str) -> bool:
    return await get_client(session, realm, client_id) is not None


# --- authorization codes and refresh tokens -------------------------------------------------


async def insert_code(session: AsyncSession, **values: Any) -> None:
    await session.execute(
        text(
            "INSERT INTO platform.auth_codes (code_hash, realm, client_id, user_id, redirect_uri,"
            " code_challenge, scope, nonce, auth_time, expires_at) VALUES (:code_hash, :realm,"
            " :client_id, :user_id, :redirect_uri, :code_challenge, :scope, :nonce, :auth_time,"
            " :expires_at)"
        ),
        values,
    )


async def take_code(session: AsyncSession, realm: str, code_hash: str) -> dict[str, Any] | None:
    """Delete and return the code: a code is good for one exchange, even a failed one."""
    return await fetch_first(
        session,
        text(
            "DELETE FROM platform.auth_codes WHERE code_hash = :code_hash AND realm = :realm"
            " RETURNING client_id, user_id, redirect_uri, code_challenge, scope, nonce, auth_time,"
            " expires_at"
        ),
        {"code_hash": code_hash, "realm": realm},
    )


async def insert_refresh(session: AsyncSession, **values: Any) -> None:
    await session.execute(
        text(
            "INSERT INTO platform.refresh_tokens (token_hash, realm, client_id, user_id, family,"
            " scope, auth_time, expires_at, session_expires_at) VALUES (:token_hash, :realm,"
            " :client_id, :user_id, :family, :scope, :auth_time, :expires_at, :session_expires_at)"
        ),
        values,
    )


async def use_refresh(
    session: AsyncSession, realm: str, token_hash: str, now: datetime
) -> tuple[dict[str, Any] | None, bool]:
    """Mark the token used; return it and whether it was unused before (False means reuse)."""
    row = await session.execute(
        text(
            "SELECT client_id, user_id, family, scope, auth_time, expires_at, used_at,"
            " session_expires_at FROM platform.refresh_tokens"
            " WHERE token_hash = :h AND realm = :realm FOR UPDATE"
        ),
        {"h": token_hash, "realm": realm},
    )
    found = row.mappings().first()
    if found is None:
        return None, False
    if found["used_at"] is not None:
        return dict(found), False
    await session.execute(
        text("UPDATE platform.refresh_tokens SET used_at = :now WHERE token_hash = :h"),
        {"h": token_hash, "now": now},
    )
    return dict(found), True


async def revoke_family(session: AsyncSession, family: UUID) -> bool:
    """Delete the chain's refresh tokens; whether it had any."""
    done = await session.execute(
        text("DELETE FROM platform.refresh_tokens WHERE family = :family"), {"family": family}
    )
    return bool(getattr(done, "rowcount", 0))


async def revoke_user_refresh(session: AsyncSession, user_id: UUID) -> None:
    await session.execute(
        text("DELETE FROM platform.refresh_tokens WHERE user_id = :user_id"), {"user_id": user_id}
    )


async def end_user_sessions(session: AsyncSession, user_id: UUID, keep: UUID | None) -> set[UUID]:
    """Delete the user's refresh tokens of every sign-in session but ``keep`` and their codes
    not yet exchanged (a sign-in in flight); return the sessions (families) ended."""
    await session.execute(
        text("DELETE FROM platform.auth_codes WHERE user_id = :user_id"), {"user_id": user_id}
    )
    done = await session.execute(
        text(
            "DELETE FROM platform.refresh_tokens WHERE user_id = :user_id"
            " AND family IS DISTINCT FROM :keep RETURNING family"
        ),
        {"user_id": user_id, "keep": keep},
    )
    return set(done.scalars())


async def purge_expired(session: AsyncSession, now: datetime) -> None:
    await session.execute(
        text("DELETE FROM platform.auth_codes WHERE expires_at < :now"), {"now": now}
    )
    await session.execute(
        text("DELETE FROM platform.refresh_tokens WHERE expires_at < :now"), {"now": now}
    )


# --- role permissions -----------------------------------------------------------------------


async def permissions_of(session: AsyncSession, tenant_id: UUID, roles: Iterable[str]) -> list[str]:
    rows = await session.execute(
        text(
            "SELECT DISTINCT permission FROM platform.role_permissions"
            " WHERE tenant_id = :tenant_id AND role = ANY(:roles)"
        ),
        {"tenant_id": tenant_id, "roles": list(roles)},
    )
    return [str(r[0]) for r in rows]


async def list_permissions(session: AsyncSession, tenant_id: UUID) -> list[tuple[str, str]]:
    """Every (role, permission) granted in the tenant."""
    rows = await session.execute(
        text(
            "SELECT role, permission FROM platform.role_permissions WHERE tenant_id = :tenant_id"
            " ORDER BY role, permission"
        ),
        {"tenant_id": tenant_id},
    )
    return [(str(r[0]), str(r[1])) for r in rows]


async def grant(
    session: AsyncSession, tenant_id: UUID, role: str, permissions: Iterable[str]
) -> None:
    for permission in permissions:
        await session.execute(
            text(
                "INSERT INTO platform.role_permissions (tenant_id, role, permission)"
                " VALUES (:tenant_id, :role, :permission) ON CONFLICT DO NOTHING"
            ),
            {"tenant_id": tenant_id, "role": role, "permission": permission},
        )


async def revoke(
    session: AsyncSession, tenant_id: UUID, role: str, permissions: Iterable[str]
) -> None:
    await session.execute(
        text(
            "DELETE FROM platform.role_permissions WHERE tenant_id = :tenant_id AND role = :role"
            " AND permission = ANY(:permissions)"
        ),
        {"tenant_id": tenant_id, "role": role, "permissions": list(permissions)},
    )


async def delete_tenant_permissions(session: AsyncSession, tenant_id: UUID) -> None:
    await session.execute(
        text("DELETE FROM platform.role_permissions WHERE tenant_id = :tenant_id"),
        {"tenant_id": tenant_id},
    )


async def set_client_enabled(session: AsyncSession, realm: str, client_id: str, on: bool) -> bool:
    return await returns_row(
        session,
        text(
            "UPDATE platform.clients SET enabled = :on WHERE realm = :realm"
            " AND client_id = :client_id RETURNING client_id"
        ),
        {"realm": realm, "client_id": client_id, "on": on},
    )


async def set_client_secret(
    session: AsyncSession, realm: str, client_id: str, secret_hash: str
) -> bool:
    return await returns_row(
        session,
        text(
            "UPDATE platform.clients SET secret_hash = :secret_hash WHERE realm = :realm"
            " AND client_id = :client_id AND NOT public RETURNING client_id"
        ),
        {"realm": realm, "client_id": client_id, "secret_hash": secret_hash},
    )


async def delete_client(session: AsyncSession, realm: str, client_id: str) -> None:
    await session.execute(
        text("DELETE FROM platform.clients WHERE realm = :realm AND client_id = :client_id"),
        {"realm": realm, "client_id": client_id},
    )


# --- service clients registry ---------------------------------------------------------------

_SERVICE_COLUMNS = (
    "realm, client_id, tenant_id, description, roles, state, revoked_before, created_by,"
    " created_at, updated_at"
)


async def service_client(
    session: AsyncSession, realm: str, client_id: str, *, lock: bool = False
) -> dict[str, Any] | None:
    return await fetch_first(
        session,
        text(
            f"SELECT {_SERVICE_COLUMNS} FROM platform.service_clients"  # noqa: S608 - constants
            " WHERE realm = :realm AND client_id = :client_id" + (" FOR UPDATE" if lock else "")
        ),
        {"realm": realm, "client_id": client_id},
    )


async def list_service_clients(session: AsyncSession, realm: str) -> list[dict[str, Any]]:
    return await fetch_all(
        session,
        text(
            f"SELECT {_SERVICE_COLUMNS} FROM platform.service_clients"  # noqa: S608 - constants
            " WHERE realm = :realm ORDER BY client_id"
        ),
        {"realm": realm},
    )


async def put_service_client(  # noqa: PLR0917 - one row's columns
    session: AsyncSession,
    realm: str,
    client_id: str,
    tenant_id: UUID | None,
    description: str,
    roles: Iterable[str],
    created_by: str,
) -> dict[str, Any]:
    """Insert an active client, or make a revoked one active again (its cutoff stays)."""
    found = await fetch_first(
        session,
        text(
            "INSERT INTO platform.service_clients (realm, client_id, tenant_id, description,"  # noqa: S608 - constants
            " roles, state, created_by) VALUES (:realm, :client_id, :tenant_id, :description,"
            " :roles, 'active', :created_by) ON CONFLICT (realm, client_id) DO UPDATE SET"
            " description = EXCLUDED.description, roles = EXCLUDED.roles, state = 'active',"
            " created_by = EXCLUDED.created_by, created_at = now(), updated_at = now()"
            " WHERE platform.service_clients.state = 'revoked'"
            f" RETURNING {_SERVICE_COLUMNS}"
        ),
        {
            "realm": realm,
            "client_id": client_id,
            "tenant_id": tenant_id,
            "description": description,
            "roles": list(roles),
            "created_by": created_by,
        },
    )
    return found or {}


async def update_service_client(
    session: AsyncSession,
    realm: str,
    client_id: str,
    *,
    state: str | None = None,
    revoked_before: int | None = None,
) -> dict[str, Any]:
    row = await session.execute(
        text(
            "UPDATE platform.service_clients SET state = COALESCE(:state, state),"  # noqa: S608 - constants
            " revoked_before = GREATEST(revoked_before, COALESCE(:cutoff, 0)), updated_at = now()"
            " WHERE realm = :realm AND client_id = :client_id"
            f" RETURNING {_SERVICE_COLUMNS}"
        ),
        {"realm": realm, "client_id": client_id, "state": state, "cutoff": revoked_before},
    )
    return dict(row.mappings().one())


async def last_sign_ins(session: AsyncSession) -> dict[UUID, datetime]:
    """Per tenant, the latest sign-in of a user that still has a refresh token (every token
    the built-in provider gives a user starts or continues a refresh chain)."""
    rows = await session.execute(
        text(
            "SELECT r.tenant_id, max(coalesce(t.auth_time, t.created_at)) AS at"
            " FROM platform.refresh_tokens t JOIN platform.realms r ON r.name = t.realm"
            " WHERE r.tenant_id IS NOT NULL AND t.user_id IS NOT NULL GROUP BY r.tenant_id"
        )
    )
    return {r.tenant_id: r.at for r in rows}
