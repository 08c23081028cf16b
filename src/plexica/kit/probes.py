"""Checks of the servers a process depends on.

Only the database is required for ``/ready``: without it nothing can be served. Redis and the
broker are optional: while they are down the service degrades (a local rate limiter, events
wait in the outbox) and the outage shows in ``/health``, ``plexica_dependency_up`` and an
alert, never by taking every replica out of the load balancer at once (ADR 0141).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from plexica.kit.db import Database
from plexica_sdk.health import Readiness


class DependencySettings(Protocol):
    """The settings the checks read; ``plexica.settings`` imports the kit, not the reverse."""

    @property
    def redis_url(self) -> object | None: ...

    @property
    def kafka_brokers(self) -> str | None: ...


def tcp_check(host: str, port: int) -> Callable[[], Awaitable[None]]:
    async def check() -> None:
        _, writer = await asyncio.open_connection(host, port)
        writer.close()
        await writer.wait_closed()

    return check


def redis_check(url: str) -> Callable[[], Awaitable[object]]:
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)

    async def check() -> object:
        return await client.ping()

    return check


def add_dependency_checks(
    readiness: Readiness, settings: DependencySettings, db: Database | None
) -> None:
    if db is not None:
        readiness.add("database", db.ping)
    if settings.redis_url is not None:
        readiness.add("redis", redis_check(str(settings.redis_url)), required=False)
    if settings.kafka_brokers:
        host, _, port = settings.kafka_brokers.split(",")[0].strip().rpartition(":")
        readiness.add("kafka", tcp_check(host, int(port)), required=False)
