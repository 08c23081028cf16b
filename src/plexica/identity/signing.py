"""The realms' signing keys: which one signs, the JWKS, rotation with overlap, sealing at rest.

A rotation (ADR 0151) publishes the new key at once and lets it sign only ``publish_ahead``
later, so that every verifier has had the chance to refetch the JWKS (they refetch on an unknown
``kid`` at most every 5 to 10 s, and HTTP caches may keep the JWKS for 60 s) before it meets a
token with the new ``kid``. The key it replaces keeps being published until its last token has
expired: ``retire_at`` = the new key's start + the longest token lifetime + a margin. Which key
signs is decided by time, not by the ``status`` column, so a rotation needs no job to take
effect; the core's identity sweep (and the next rotation) promote, then delete, keys whose time
has come, and the JWKS leaves out a key past ``retire_at`` even before it is deleted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from cryptography.hazmat.primitives import serialization
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.identity import custody, key_repository
from plexica.identity.custody import KeyCustodyError
from plexica.identity.key_repository import ACTIVE, NEXT, PREVIOUS, KeyRow
from plexica.identity.keys import generate
from plexica.kit.db import Database
from plexica_sdk.errors import ConflictError, NotFoundError

log = structlog.get_logger("plexica.identity.keys")

PUBLISH_AHEAD = timedelta(seconds=120)
# Beyond the token lifetime: clock skew between hosts, verification leeway, and a token signed
# by a transaction that read the old key just before the new one took over.
RETIRE_MARGIN = timedelta(seconds=120)


def now() -> datetime:
    return datetime.now(UTC)


class NoSigningKeyError(Exception):
    pass


# --- signing --------------------------------------------------------------------------------

_PRIVATE_KEYS: dict[str, Any] = {}


def _private_key(row: KeyRow) -> Any:
    # Opening and loading (RSA key validation) cost milliseconds: done once per kid and process.
    key = _PRIVATE_KEYS.get(row.kid)
    if key is None:
        if row.sealed_key is not None:
            pem = custody.ring().open(row.sealed_key, row.sealed_with)
        elif row.private_pem is not None:  # written before ADR 0150; sealed at the next start
            pem = row.private_pem
        else:
            raise NoSigningKeyError(f"key {row.kid} has no private material")
        if len(_PRIVATE_KEYS) > 1000:
            _PRIVATE_KEYS.clear()
        key = _PRIVATE_KEYS[row.kid] = serialization.load_pem_private_key(pem.encode(), None)
    return key


def signing_row(rows: list[KeyRow], at: datetime) -> KeyRow | None:
    """The key that signs at ``at``: of the active and pre-published keys, the latest started."""
    started = [r for r in rows if r.status in (ACTIVE, NEXT) and r.signs_from <= at]
    return max(started, key=lambda r: r.signs_from, default=None)


async def signer(session: AsyncSession, realm: str) -> tuple[str, Any]:
    """The kid and private key that sign the realm's tokens now."""
    row = signing_row(await key_repository.of_realm(session, realm), now())
    if row is None:
        raise NoSigningKeyError(f"realm {realm} has no signing key")
    try:
        return row.kid, _private_key(row)
    except KeyCustodyError as exc:
        # One line, no traceback: the cause is a setting, not the code.
        log.error("realm_key_unreadable", realm=realm, kid=row.kid, error=str(exc))  # noqa: TRY400
        raise


def published(rows: list[KeyRow], at: datetime) -> list[KeyRow]:
    """The keys in the JWKS: all but those past ``retire_at`` (never the one that signs)."""
    signer_ = signing_row(rows, at)
    return [r for r in rows if r is signer_ or r.retire_at is None or r.retire_at > at]


async def jwks(session: AsyncSession, realm: str) -> dict[str, Any]:
    rows = await key_repository.of_realm(session, realm)
    return {"keys": [r.public_jwk for r in published(rows, now())]}


# --- creation and rotation ------------------------------------------------------------------


async def _new_sealed() -> tuple[str, custody.Sealed, dict[str, Any]]:
    ring = custody.ring()  # before the 2048-bit key is made: fail fast without a ring
    key = await asyncio.to_thread(generate)
    return key.kid, ring.seal(key.private_pem), key.public_jwk


async def create_first(session: AsyncSession, realm: str) -> str:
    """The realm's first key, signing at once (the caller holds the realm's lock)."""
    kid, sealed, jwk = await _new_sealed()
    await key_repository.insert(
        session, kid=kid, realm=realm, status=ACTIVE, sealed_key=sealed.token,
        sealed_with=sealed.key_id, public_jwk=jwk, activates_at=None,
    )  # fmt: skip
    return kid


@dataclass(frozen=True)
class Rotation:
    realm: str
    kid: str
    signs_from: datetime
    previous_kid: str | None
    previous_retire_at: datetime | None


def retire_horizon() -> timedelta:
    from plexica.identity.service import ACCESS_TTL

    return timedelta(seconds=ACCESS_TTL) + RETIRE_MARGIN


async def rotate(
    session: AsyncSession,
    realm: str,
    *,
    publish_ahead: timedelta = PUBLISH_AHEAD,
    at: datetime | None = None,
) -> Rotation:
    """A new key, published now and signing from ``at + publish_ahead``; the key it replaces is
    retired once the last token it signed has expired. One rotation at a time per realm."""
    kid, sealed, jwk = await _new_sealed()  # made before the lock, which is held for milliseconds
    await key_repository.lock_keys(session)
    at = at or now()
    await key_repository.promote_due(session, at)
    await key_repository.delete_retired(session, at)
    rows = await key_repository.of_realm(session, realm)
    pending = next((r for r in rows if r.status == NEXT), None)
    if pending is not None:
        raise ConflictError(
            f"a rotation is under way: key {pending.kid} signs from {pending.signs_from:%H:%M:%S}"
            " UTC; rotate again after that"
        )
    current = signing_row(rows, at)
    signs_from = at + max(publish_ahead, timedelta(0))
    await key_repository.insert(
        session, kid=kid, realm=realm, status=NEXT, sealed_key=sealed.token,
        sealed_with=sealed.key_id, public_jwk=jwk, activates_at=signs_from,
    )  # fmt: skip
    retire_at = None
    if current is not None:
        retire_at = signs_from + retire_horizon()
        await key_repository.set_retire_at(session, current.kid, retire_at)
    await key_repository.promote_due(session, at)  # without pre-publication: at once
    log.info("realm_key_rotated", realm=realm, kid=kid, signs_from=signs_from.isoformat())
    return Rotation(realm, kid, signs_from, current.kid if current else None, retire_at)


async def retire_now(session: AsyncSession, realm: str, kid: str) -> None:
    """Unpublish a key at once (a leaked key): its tokens stop verifying wherever the JWKS is
    fetched again. The key that signs now cannot be retired: rotate first."""
    await key_repository.lock_keys(session)
    at = now()
    await key_repository.promote_due(session, at)
    rows = await key_repository.of_realm(session, realm)
    row = next((r for r in rows if r.kid == kid), None)
    if row is None:
        raise NotFoundError("no such key in this realm")
    current = signing_row(rows, at)
    if current is not None and current.kid == kid:
        raise ConflictError(f"key {kid} signs now: rotate first (--publish-ahead 0 if urgent)")
    await key_repository.set_status(session, kid, PREVIOUS)
    await key_repository.set_retire_at(session, kid, at)
    await key_repository.delete_retired(session, at)
    if row.status == NEXT and current is not None:  # a rotation called off: nothing replaces it
        await key_repository.set_retire_at(session, current.kid, None)
    log.warning("realm_key_retired_early", realm=realm, kid=kid)


@dataclass(frozen=True)
class Sweep:
    promoted: list[str]
    retired: list[str]


async def sweep(session: AsyncSession, at: datetime | None = None) -> Sweep:
    """Bookkeeping of every realm: started keys become ``active``, expired ones are deleted."""
    at = at or now()
    await key_repository.lock_keys(session)
    done = Sweep(
        await key_repository.promote_due(session, at),
        await key_repository.delete_retired(session, at),
    )
    if done.promoted or done.retired:
        log.info("realm_keys_swept", promoted=done.promoted, retired=done.retired)
    return done


# --- custody --------------------------------------------------------------------------------


async def verify_ring(session: AsyncSession) -> int:
    """Raise KeyCustodyError unless the installed ring opens the keys: one key per secret id
    found in the table is opened. Returns how many keys are sealed."""
    rows = [r for r in await key_repository.all_keys(session) if r.sealed_key is not None]
    if rows:
        ring = custody.ring()
        for key_id in {r.sealed_with for r in rows}:
            sample = next(r for r in rows if r.sealed_with == key_id)
            assert sample.sealed_key is not None
            ring.open(sample.sealed_key, sample.sealed_with)
    return len(rows)


async def reseal(session: AsyncSession, *, all_keys: bool) -> int:
    """Seal plaintext keys with the ring's first secret; with ``all_keys``, also re-seal keys
    sealed with another secret of the ring. Returns how many keys were written."""
    await key_repository.lock_keys(session)
    ring = custody.ring()
    written = 0
    for row in await key_repository.all_keys(session):
        if row.sealed_key is not None and (row.sealed_with == ring.primary or not all_keys):
            continue
        if row.sealed_key is not None:
            pem = ring.open(row.sealed_key, row.sealed_with)
        elif row.private_pem is not None:
            pem = row.private_pem
        else:
            continue
        sealed = ring.seal(pem)
        if await key_repository.store_sealed(
            session, row.kid, sealed.token, sealed.key_id, was=row.sealed_key
        ):
            written += 1
    return written


async def prepare(db: Database) -> int:
    """At start-up: refuse a ring that cannot open the stored keys (KeyCustodyError), then seal
    any key still in plaintext. Returns how many were sealed."""
    async with db.session() as session:
        await verify_ring(session)
        if not any(r.private_pem is not None for r in await key_repository.all_keys(session)):
            return 0
        sealed = await reseal(session, all_keys=False)
    log.info("realm_keys_sealed", count=sealed)
    return sealed


# --- listing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyInfo:
    realm: str
    kid: str
    state: str  # signing | published | retiring
    signs_from: datetime
    retire_at: datetime | None
    sealed_with: str | None  # None: still in plaintext


async def describe(session: AsyncSession, realm: str | None) -> list[KeyInfo]:
    at = now()
    rows = (
        await key_repository.of_realm(session, realm)
        if realm is not None
        else await key_repository.all_keys(session)
    )
    signing = {r.realm: signing_row([x for x in rows if x.realm == r.realm], at) for r in rows}
    out = []
    for r in published(rows, at):
        active = signing[r.realm]
        if active is not None and active.kid == r.kid:
            state = "signing"
        elif r.signs_from > at:
            state = "published"
        else:
            state = "retiring"
        out.append(KeyInfo(r.realm, r.kid, state, r.signs_from, r.retire_at, r.sealed_with))
    return out
