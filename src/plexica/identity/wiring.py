"""What the core's composition root sets up for identity: throttle, verifier, adapter."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx
import structlog
from sqlalchemy.exc import SQLAlchemyError

from plexica.identity import custody, repository, revocation, sealed, service, signing
from plexica.identity.adapter import IdentityAdapter
from plexica.identity.bootstrap import bootstrap
from plexica.identity.builtin import BuiltinIdentity
from plexica.identity.custody import KeyCustodyError
from plexica.identity.jwks import build_verifier
from plexica.identity.keycloak import KeycloakAdapter
from plexica.identity.throttle import GuardedThrottle, PostgresThrottle, RedisThrottle
from plexica.kit.db import Database
from plexica.kit.redisguard import Breaker, redis_client
from plexica.kit.state import CoreState
from plexica.mail.service import mailer_for
from plexica.settings import Settings
from plexica_sdk.errors import PlexicaError

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = structlog.get_logger("plexica.identity")
SWEEP_SECONDS = 600.0


async def _maintain(db: Database, settings: Settings) -> None:
    """The operator realm and the sealing of plaintext keys, retried (a core whose database is
    down still starts, unready), then a periodic sweep of expired grants and retired keys."""
    delay = 0.5
    while True:
        try:
            await bootstrap(db, settings.public_base_url, settings.operator_email, None)
            await sealed.prepare(db)
        except (OSError, SQLAlchemyError) as exc:
            log.warning("identity_bootstrap_retry", error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
        except KeyCustodyError as exc:
            # `plexica serve core` and `plexica up` refuse to start for this; here (an app built
            # by other means) the provider refuses to sign until the setting is right.
            log.error("realm_keys_unusable", error=str(exc))  # noqa: TRY400 - a setting
            break
        else:
            break
    while True:
        # Spent codes are deleted on use; expired codes and refresh tokens are swept here.
        await asyncio.sleep(SWEEP_SECONDS)
        try:
            async with db.session() as session:
                await service.purge_expired(session)
                await revocation.purge(session)
            async with db.session() as session:
                await signing.sweep(session)
        except (OSError, SQLAlchemyError) as exc:
            log.warning("identity_sweep_failed", error=str(exc))


async def _operator_realm_in_keycloak(db: Database, adapter: IdentityAdapter) -> None:
    """With Keycloak, the operator realm is created there (idempotent) and registered as an
    issuer; its first operator is made in Keycloak by whoever runs it."""
    delay = 0.5
    while True:
        try:
            await adapter.create_realm(service.OPERATOR_REALM, None)
            async with db.session() as session:
                await repository.upsert_realm(session, service.OPERATOR_REALM, None)
        except (OSError, SQLAlchemyError, PlexicaError) as exc:
            log.warning("operator_realm_retry", error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
        else:
            return


@asynccontextmanager
async def identity_lifespan(
    core: CoreState, settings: Settings, db: Database
) -> AsyncIterator[None]:
    """``core.jwks_transport`` (tests) lets the resolver reach JWKS without a socket."""
    redis: Redis | None = None
    if settings.redis_url is not None:
        budget = settings.redis_timeout_ms / 1000
        redis = redis_client(str(settings.redis_url), timeout=budget, max_connections=20)
        core.login_throttle = GuardedThrottle(
            RedisThrottle(redis), PostgresThrottle(db),
            breaker=Breaker("login_throttle", timeout=budget),
        )  # fmt: skip
    else:
        core.login_throttle = PostgresThrottle(db)
    if core.mailer is None:
        core.mailer = mailer_for(settings, db)
    ensure_realm: asyncio.Task[None] | None = None
    keycloak: KeycloakAdapter | None = None
    if settings.keycloak_url is None:
        custody.install_from(settings)
        ensure_realm = asyncio.create_task(_maintain(db, settings))
        if core.identity is None:
            core.identity = BuiltinIdentity(db, settings.public_base_url)
    else:
        if core.identity is None:
            core.identity = keycloak = KeycloakAdapter.from_settings(settings)
        ensure_realm = asyncio.create_task(_operator_realm_in_keycloak(db, core.identity))
    async with httpx.AsyncClient(transport=core.jwks_transport) as http:
        own_verifier = core.verifier is None
        revocations = revocation.core_revocations(db)
        core.revocations = revocations
        await revocations.start()  # loads first: the first requests see every revocation
        if own_verifier:
            core.verifier = build_verifier(
                db,
                settings.issuer_base_url,
                http,
                revocations=revocations,
                keys_url=settings.keycloak_base_url,
            )
        try:
            yield
        finally:
            await revocations.aclose()
            if own_verifier:
                core.verifier = None
            if ensure_realm is not None:
                ensure_realm.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ensure_realm
            if redis is not None:
                await redis.aclose()
            if keycloak is not None:
                await keycloak.aclose()
