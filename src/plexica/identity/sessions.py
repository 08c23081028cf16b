"""Sign-in sessions of the built-in provider: a session is one refresh-token family, and its id
is the ``sid`` claim of the tokens it gave (ADR 0115). Ending it stops its refresh tokens and
refuses its access tokens everywhere, through the revocation store."""

from __future__ import annotations

import contextlib
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from plexica.identity import repository, revocation
from plexica.identity.service import now_utc, sha256
from plexica_sdk.revocation import Revocation


async def logout(
    session: AsyncSession, realm: str, refresh_token: str | None, sid: str | None = None
) -> list[Revocation]:
    """End the sign-in session of the refresh token and/or of ``sid`` (from a verified ID token
    hint): its refresh tokens stop working and its access tokens are refused everywhere."""
    families: set[UUID] = set()
    if refresh_token:
        grant, _ = await repository.use_refresh(session, realm, sha256(refresh_token), now_utc())
        if grant is not None:
            families.add(grant["family"])
    if sid:
        with contextlib.suppress(ValueError):
            families.add(UUID(sid))
    ended = []
    for family in families:
        await repository.revoke_family(session, family)
        ended.append(await revocation.end_session(session, realm, str(family)))
    return ended
