"""What the key ring seals (ADR 0150): the realms' signing keys and the tenants' company sign-in
secrets (ADR 0246). At start-up a ring that cannot open one of them stops the process, rather
than failing sign-ins one by one later."""

from __future__ import annotations

from plexica.identity import signing, sso
from plexica.kit.db import Database


async def prepare(db: Database) -> int:
    """``signing.prepare`` (which seals plaintext keys: how many), then the secrets checked."""
    sealed = await signing.prepare(db)
    async with db.session() as session:
        await sso.verify_ring(session)
    return sealed
