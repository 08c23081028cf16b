"""What the core's composition root sets up for identity: throttle, verifier, adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from redis.asyncio import Redis

from plexica.identity.bootstrap import bootstrap
from plexica.identity.builtin import BuiltinIdentity
from plexica.identity.jwks import build_verifier
from plexica.identity.throttle import MemoryThrottle, RedisThrottle
from plexica.kit.db import Database
from plexica.settings import Settings


@asynccontextmanager
async def identity_lifespan(app: FastAPI, settings: Settings, db: Database) -> AsyncIterator[None]:
    """``app.state.jwks_transport`` (tests) lets the resolver reach JWKS without a socket."""
    redis: Redis | None = None
    if settings.redis_url is not None:
        redis = Redis.from_url(str(settings.redis_url))
        app.state.login_throttle = RedisThrottle(redis)
    else:
        app.state.login_throttle = MemoryThrottle()
    if settings.keycloak_url is None:
        await bootstrap(db, settings.public_base_url, settings.operator_email, None)
        if getattr(app.state, "identity", None) is None:
            app.state.identity = BuiltinIdentity(db, settings.public_base_url)
    transport = getattr(app.state, "jwks_transport", None)
    async with httpx.AsyncClient(transport=transport) as http:
        own_verifier = app.state.verifier is None
        if own_verifier:
            app.state.verifier = build_verifier(db, settings.issuer_base_url, http)
        try:
            yield
        finally:
            if own_verifier:
                app.state.verifier = None
            if redis is not None:
                await redis.aclose()
