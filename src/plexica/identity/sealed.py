"""What the key ring seals (ADR 0150): the realms' signing keys (``signing``), and the secrets
kept beside them, the users' TOTP secrets (ADR 0232) and the tenants' company sign-in client
secrets (ADR 0246). A ring that cannot open one of them stops start-up, rather than failing
sign-ins one by one later; ``plexica keys re-encrypt`` re-seals them all."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from plexica.identity import custody, signing
from plexica.identity import mfa_repository as totp
from plexica.identity import sso_repository as company
from plexica.identity.sealed_repository import SealedSecrets
from plexica.kit.db import Database

_SECRETS: tuple[SealedSecrets, ...] = (totp.sealed_secrets, company.sealed_secrets)


async def prepare(db: Database) -> int:
    """``signing.prepare`` (it seals plaintext keys: how many), then every secret checked."""
    sealed = await signing.prepare(db)
    async with db.session() as session:
        for secrets in _SECRETS:
            seen: set[str] = set()
            for row in await secrets.rows(session):
                if row["sealed_with"] not in seen:  # one secret per key id
                    custody.ring().open(row["sealed_secret"], row["sealed_with"])
                    seen.add(row["sealed_with"])
    return sealed


async def reseal(session: AsyncSession) -> int:
    """Keys and secrets sealed with another key of the ring sealed with its first: how many."""
    written = await signing.reseal(session, all_keys=True)
    ring = custody.ring()
    for secrets in _SECRETS:
        for row in await secrets.rows(session):
            if row["sealed_with"] != ring.primary:
                again = ring.seal(ring.open(row["sealed_secret"], row["sealed_with"]))
                await secrets.store(session, row["key"], again.token, again.key_id)
                written += 1
    return written
