"""SQL of company sign-in (migration i0010): a realm's provider and the sign-ins on their way
through it."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_COLUMNS = (
    "display_name, issuer, client_id, sealed_secret, sealed_with, domains, default_role,"
    " required, updated_at"
)


async def provider_of(session: AsyncSession, realm: str) -> dict[str, Any] | None:
    row = await session.execute(
        text(f"SELECT {_COLUMNS} FROM platform.realm_sso WHERE realm = :r"),  # noqa: S608 - constant
        {"r": realm},
    )
    found = row.mappings().first()
    return dict(found) if found else None


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
    row = await session.execute(
        text("DELETE FROM platform.realm_sso WHERE realm = :r RETURNING 1"), {"r": realm}
    )
    return row.first() is not None


async def open_login(
    session: AsyncSession,
    state_hash: str,
    realm: str,
    *,
    params: dict[str, str],
    nonce: str,
    verifier: str,
    seconds: int,
) -> None:
    await session.execute(
        text(
            "INSERT INTO platform.sso_logins (state_hash, realm, params, nonce, verifier,"
            " expires_at) VALUES (:h, :r, CAST(:p AS jsonb), :n, :v,"
            " now() + make_interval(secs => :s))"
        ),
        {"h": state_hash, "r": realm, "p": json.dumps(params), "n": nonce, "v": verifier,
         "s": seconds},
    )  # fmt: skip
    await session.execute(text("DELETE FROM platform.sso_logins WHERE expires_at < now()"))


async def take_login(session: AsyncSession, state_hash: str, realm: str) -> dict[str, Any] | None:
    """The sign-in of that state, once: a replayed answer finds nothing."""
    row = await session.execute(
        text(
            "DELETE FROM platform.sso_logins WHERE state_hash = :h AND realm = :r"
            " AND expires_at > now() RETURNING params, nonce, verifier"
        ),
        {"h": state_hash, "r": realm},
    )
    found = row.mappings().first()
    return dict(found) if found else None
