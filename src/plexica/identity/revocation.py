"""The revocation store of the platform (ADR 0115; ADR 0016 for service clients).

What token verification refuses lives in ``platform.revocations``: cut-offs per (realm, subject)
and per (realm, client), revoked sign-in sessions (``sid``) and suspended realms. The functions
here record them in the caller's transaction (they never commit); the table's trigger wakes
every process listening (core replicas, the gateway decision, plugin processes), which re-read
it. The acting process also ``note``s the change so that it refuses at once.
"""

from __future__ import annotations

import asyncio
import time

from sqlalchemy.ext.asyncio import AsyncSession

from plexica.identity import revocation_repository as repository
from plexica.kit.db import Database
from plexica_sdk.revocation import (
    CLIENT,
    REALM,
    SESSION,
    SUBJECT,
    Revocation,
    RevocationList,
    listen_connect,
)

# Longer than any access token's lifetime (built-in 300 s, realm 300 s): after it, an entry
# refuses nothing and is swept.
HORIZON_SECONDS = 3600


def core_revocations(
    db: Database, *, poll_seconds: float = 30.0, retry_seconds: float = 2.0
) -> RevocationList:
    async def load() -> list[Revocation]:
        async with db.session() as session:
            return await repository.live(session)

    return RevocationList(
        load, listen_connect(db.engine), poll_seconds=poll_seconds, retry_seconds=retry_seconds
    )


def next_second() -> int:
    """A cut-off that refuses every token issued up to now (``iat`` has whole seconds)."""
    return int(time.time()) + 1


async def wait_for(cutoff: int) -> None:
    """Wait until the cut-off second has begun, so that a token got from now on (signing in
    again, a refresh with the new roles) does not fall under it."""
    await asyncio.sleep(max(0.0, cutoff - time.time()))


async def cut_subject(session: AsyncSession, realm: str, subject: str) -> Revocation:
    """Refuse the access tokens ``subject`` of ``realm`` got up to now."""
    return await repository.put(
        session, Revocation(realm, SUBJECT, subject, next_second()), HORIZON_SECONDS
    )


async def cut_client(session: AsyncSession, realm: str, client_id: str, before: int) -> Revocation:
    return await repository.put(
        session, Revocation(realm, CLIENT, client_id, before), HORIZON_SECONDS
    )


async def end_session(session: AsyncSession, realm: str, session_id: str) -> Revocation:
    """Refuse the access tokens of one sign-in session (their ``sid``)."""
    return await repository.put(
        session, Revocation(realm, SESSION, session_id, int(time.time())), HORIZON_SECONDS
    )


async def suspend_realm(session: AsyncSession, realm: str) -> Revocation:
    """Refuse every token of the realm until ``resume_realm`` (403 ``tenant_suspended``)."""
    return await repository.put(session, Revocation(realm, REALM, "", int(time.time())), None)


async def resume_realm(session: AsyncSession, realm: str) -> None:
    await repository.remove(session, realm, REALM, "")


async def forget_realm(session: AsyncSession, realm: str) -> None:
    await repository.remove_realm(session, realm)


async def purge(session: AsyncSession) -> None:
    await repository.purge(session)
