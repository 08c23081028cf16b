"""Sign-in sessions of the built-in provider: a session is one refresh-token family, and its id
is the ``sid`` claim of the tokens it gave (ADR 0115). Ending it stops its refresh tokens and
refuses its access tokens everywhere, through the revocation store."""

from __future__ import annotations

from uuid import UUID

import jwt
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.identity import repository, revocation
from plexica.identity.keys import public_key_from_jwk
from plexica.identity.service import issuer_url, now_utc, sha256
from plexica_sdk.revocation import Revocation


async def logout(
    session: AsyncSession,
    realm: str,
    refresh_token: str | None,
    id_token_hint: str | None = None,
    base_url: str = "",
) -> list[Revocation]:
    """End the sign-in session of the refresh token and/or the ID token hint: its refresh
    tokens stop working and its access tokens are refused everywhere (their ``sid``)."""
    families: set[UUID] = set()
    if refresh_token:
        grant, _ = await repository.use_refresh(session, realm, sha256(refresh_token), now_utc())
        if grant is not None:
            families.add(grant["family"])
    if id_token_hint:
        sid = await _hinted_session(session, realm, id_token_hint, base_url)
        if sid is not None:
            families.add(sid)
    ended = []
    for family in families:
        await repository.revoke_family(session, family)
        ended.append(await revocation.end_session(session, realm, str(family)))
    return ended


async def _hinted_session(
    session: AsyncSession, realm: str, id_token: str, base_url: str
) -> UUID | None:
    """The ``sid`` of an ID token this realm signed (it may have expired: RP-initiated logout
    1.0 §2); None when it is not one."""
    try:
        kid = jwt.get_unverified_header(id_token).get("kid")
    except jwt.PyJWTError:
        return None
    for key in await repository.keys(session, realm):
        public = public_key_from_jwk(key["public_jwk"]) if key["kid"] == kid else None
        if public is None:
            continue
        try:
            claims = jwt.decode(
                id_token, public, algorithms=["RS256"], issuer=issuer_url(base_url, realm),
                options={"verify_aud": False, "verify_exp": False},
            )  # fmt: skip
            return UUID(str(claims.get("sid")))
        except (jwt.PyJWTError, ValueError):
            return None
    return None
