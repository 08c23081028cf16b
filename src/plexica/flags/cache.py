"""The in-process snapshot of every flag and the bus that tells replicas to refresh it.

Evaluation reads a plain dict that is replaced, never mutated (copy on write), so readers need
no lock. A change is announced after its transaction commits: on Redis pub/sub when
``PLEXICA_REDIS_URL`` is set (every replica reloads the flag from PostgreSQL), in-process
otherwise. A periodic full reload repairs anything a dropped connection made a replica miss.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import structlog
from pydantic import ValidationError

from plexica.flags import repository
from plexica.kit.channel import ChannelListener
from plexica.kit.db import Database
from plexica.kit.redisguard import redis_failures
from plexica_sdk.flags import FlagDefinition

if TYPE_CHECKING:
    from redis.asyncio import Redis

CHANNEL = "plexica:flags:changed"
ALL = "*"
_log = structlog.get_logger("plexica.flags")
OnChange = Callable[[str], Awaitable[None]]


def parse(definition: dict[str, object], version: int) -> FlagDefinition | None:
    try:
        return FlagDefinition.model_validate({**definition, "version": version})
    except ValidationError:
        _log.error("stored flag is not valid; ignored", flag=definition.get("key"))
        return None


class FlagCache:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._flags: dict[str, FlagDefinition] = {}
        self.etag = _etag({})
        self.loaded = asyncio.Event()

    def _set(self, flags: dict[str, FlagDefinition]) -> None:
        self._flags = flags
        self.etag = _etag(flags)

    def get(self, key: str) -> FlagDefinition | None:
        return self._flags.get(key)

    def all(self) -> dict[str, FlagDefinition]:
        return self._flags

    def put(self, flag: FlagDefinition) -> None:
        current = self._flags.get(flag.key)
        if current is not None and current.version > flag.version:
            return
        self._set({**self._flags, flag.key: flag})

    async def reload(self) -> None:
        async with self._db.session() as session:
            rows = await repository.all_flags(session)
        flags = {f.key: f for d, v in rows if (f := parse(d, v)) is not None}
        self._set(flags)
        self.loaded.set()

    async def reload_one(self, key: str) -> None:
        if key == ALL:
            await self.reload()
            return
        async with self._db.session() as session:
            row = await repository.get(session, key)
        if row is None:
            self._set({k: v for k, v in self._flags.items() if k != key})
        elif (flag := parse(*row)) is not None:
            self.put(flag)


def _etag(flags: dict[str, FlagDefinition]) -> str:
    stamp = ",".join(f"{k}:{f.version}" for k, f in sorted(flags.items()))
    return '"' + hashlib.sha256(stamp.encode()).hexdigest()[:32] + '"'


class ChangeBus(Protocol):
    async def start(self, on_change: OnChange) -> None: ...

    async def publish(self, key: str) -> None: ...

    async def close(self) -> None: ...


class LocalBus:
    """The embedded mode: one process, so a change is applied where it is made."""

    def __init__(self) -> None:
        self._listeners: list[OnChange] = []

    async def start(self, on_change: OnChange) -> None:
        self._listeners.append(on_change)

    async def publish(self, key: str) -> None:
        for listener in self._listeners:
            await listener(key)

    async def close(self) -> None:
        self._listeners.clear()


class RedisBus:
    def __init__(self, url: str, channel: str = CHANNEL) -> None:
        from redis.asyncio import Redis

        self._redis: Redis = Redis.from_url(url, socket_connect_timeout=2, health_check_interval=10)
        self._failures = redis_failures()
        self._channel = channel
        self._listener: ChannelListener | None = None

    async def start(self, on_change: OnChange) -> None:
        async def changed(key: str) -> None:
            try:
                await on_change(key)
            except Exception:  # noqa: BLE001 - one bad refresh must not stop the listener
                _log.exception("flag refresh failed", flag=key)

        async def subscribed(again: bool) -> None:
            if again:  # messages may have been missed while away
                await changed(ALL)

        self._listener = ChannelListener(
            self._redis,
            self._channel,
            on_message=changed,
            on_subscribed=subscribed,
            retry_after=0.5,
        )
        await self._listener.start()

    async def publish(self, key: str) -> None:
        try:
            # Bounded: a hanging Redis must not hold up the change (the periodic reload covers).
            async with asyncio.timeout(1.0):
                try:
                    await self._redis.publish(self._channel, key)
                except self._failures:
                    # A pooled connection broken by a Redis restart fails once; a new one works.
                    await self._redis.publish(self._channel, key)
        except self._failures as exc:
            # The change is committed; replicas pick it up at their next periodic reload.
            _log.warning(
                "flag change not announced; replicas resync shortly", flag=key, error=str(exc)
            )

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.stop()
        await self._redis.aclose()


async def resync_forever(cache: FlagCache, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await cache.reload()
        except Exception:  # noqa: BLE001 - keep serving the last snapshot and retry later
            _log.exception("periodic flag reload failed")
