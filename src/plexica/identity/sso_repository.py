"""SQL of company sign-in (migration i0010): a realm's provider and the sign-ins on their way
through it."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.identity.sealed_repository import SealedSecrets
from plexica_sdk.db import fetch_first, returns_row

_COLUMNS = (
    "display_name, issuer, client_id, sealed_secret, sealed_with, domains, default_role,"
    " required, updated_at"
)


async def provider_of(session: AsyncSession, realm: str) -> dict[str, Any] | None:
    return await fetch_first(
        session,
        text(f"SELECT {_COLUMNS} FROM platform.realm_sso WHERE realm = :r"),  # noqa: S608 - constant
        {"r": realm},
    )


async def put_provider(session: AsyncSession, realm: str, values: dict[str, Any]) -> None:
    await session.execute(
        text(
            "INSERT INTO platform.realm_sso (realm, display_name, issuer, client_id,"
            " sealed_secret, sealed_with, domains, default_role, required)"
            " VALUES (:r, :display_name, :issuer, :client_id, :sealed_secret, :sealed_with,"
            " :domains, :default_role, :required)"
            " ON CONFLICT (realm) DO UPDATE SET display_name = EXCLUDED.display_name,"
            " issuer = EXCLUDED.issuer, client_id = EXCLUDED.client_id,"
            " sealed_secret = EXCLUDED.sealed_secret, sealed_with = EXCLUDED.sealed_with,"
            " domains = EXCLUDED.domains, default_role = EXCLUDED.default_role,"
            " required = EXCLUDED.required, updated_at = now()"
        ),
        {"r": realm, **values},
    )


async def delete_provider(session: AsyncSession, realm: str) -> bool:
    return await returns_row(
        session, text("DELETE FROM platform.realm_sso WHERE realm = :r RETURNING 1"), {"r": realm}
    )


async def open_login(
    session: AsyncSession,
    state_hash: str,
    realm: str,
    *,
    params: dict[str, str],
    nonce: str,
    verifier: str,
    browser_hash: str,
    seconds: int,
) -> None:
    await session.execute(
        text(
            "INSERT INTO platform.sso_logins (state_hash, realm, params, nonce, verifier,"
            " browser_hash, expires_at) VALUES (:h, :r, CAST(:p AS jsonb), :n, :v, :b,"
            " now() + make_interval(secs => :s))"
        ),
        {"h": state_hash, "r": realm, "p": json.dumps(params), "n": nonce, "v": verifier,
         "b": browser_hash, "s": seconds},
    )  # fmt: skip
    await session.execute(text("DELETE FROM platform.sso_logins WHERE expires_at < now()"))


async def take_login(
    session: AsyncSession, state_hash: str, realm: str, browser_hash: str
) -> dict[str, Any] | None:
    """The sign-in of that state started in that browser, once: a replayed answer, or one
    brought to another browser, finds nothing (the state is spent either way)."""
    row = await session.execute(
        text(
            "DELETE FROM platform.sso_logins WHERE state_hash = :h AND realm = :r"
            " AND expires_at > now() RETURNING params, nonce, verifier, browser_hash"
        ),
        {"h": state_hash, "r": realm},
    )
    found = row.mappings().first()
    return dict(found) if found and found["browser_hash"] == browser_hash else None


async def linked_user(
    session: AsyncSession, realm: str, issuer: str, subject: str
) -> dict[str, Any] | None:
    """The link of that company account in the realm."""
    return await fetch_first(
        session,
        text(
            "SELECT user_id FROM platform.user_sso"
            " WHERE realm = :r AND issuer = :i AND subject = :s"
        ),
        {"r": realm, "i": issuer, "s": subject},
    )


async def link_of(session: AsyncSession, user_id: UUID) -> dict[str, Any] | None:
    return await fetch_first(
        session,
        text("SELECT issuer, subject FROM platform.user_sso WHERE user_id = :u"),
        {"u": user_id},
    )


async def link(session: AsyncSession, user_id: UUID, realm: str, issuer: str, subject: str) -> None:
    await session.execute(
        text(
            "INSERT INTO platform.user_sso (user_id, realm, issuer, subject)"
            " VALUES (:u, :r, :i, :s)"
            " ON CONFLICT (user_id) DO UPDATE SET issuer = EXCLUDED.issuer,"
            " subject = EXCLUDED.subject, linked_at = now()"
        ),
        {"u": user_id, "r": realm, "i": issuer, "s": subject},
    )


sealed_secrets = SealedSecrets("realm_sso", key="realm")
