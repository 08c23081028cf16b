"""RP-initiated logout's ``id_token_hint``: an ID token this realm issued names the client (and,
with its ``sid``, the session) that asks to sign out."""

from __future__ import annotations

from typing import Any

import jwt
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.identity import key_repository, signing
from plexica.identity.keys import public_key_from_jwk
from plexica.identity.service import issuer_url, now_utc


async def claims(
    session: AsyncSession, realm: str, token: str, base_url: str
) -> dict[str, Any] | None:
    """The claims of an ID token this realm issued (RP-initiated logout's ``id_token_hint``),
    or None. Signature and issuer are checked; an expired token is still a good hint (the
    session it names may outlive it), and any audience is accepted: the caller matches it."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        return None
    for key in signing.published(await key_repository.of_realm(session, realm), now_utc()):
        if key.kid == kid:
            public = public_key_from_jwk(key.public_jwk)
            if public is None:
                return None
            try:
                found = jwt.decode(
                    token, public, algorithms=["RS256"], issuer=issuer_url(base_url, realm),
                    options={"verify_aud": False, "verify_exp": False, "require": ["aud", "sub"]},
                )  # fmt: skip
            except jwt.PyJWTError:
                return None
            return dict(found)
    return None


def audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud")
    return [aud] if isinstance(aud, str) else [str(a) for a in aud or ()]
