"""One Redis pub/sub channel listened to for as long as a process runs: the way every replica
hears that a tenant or a flag changed (ADR 0032, ADR 0145)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = structlog.get_logger("plexica.kit.channel")

STOP_TIMEOUT = 2.0


class ChannelListener:
    """Subscribes to ``channel`` and hands every message's text to ``on_message``. After a lost
    connection (``on_lost`` is told) it subscribes again ``retry_after`` seconds later;
    ``on_subscribed(again)`` runs on every subscription (``again``: messages may have been
    missed while away)."""

    def __init__(
        self,
        redis: Redis,
        channel: str,
        *,
        on_message: Callable[[str], Awaitable[None]],
        on_subscribed: Callable[[bool], Awaitable[None]],
        on_lost: Callable[[], None] = lambda: None,
        retry_after: float,
    ) -> None:
        self.redis = redis
        self.channel = channel
        self.on_message = on_message
        self.on_subscribed = on_subscribed
        self.on_lost = on_lost
        self.retry_after = retry_after
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self, wait: float = 5.0) -> None:
        """Start listening; wait up to ``wait`` seconds for the first subscription (a Redis
        that is away does not hold up the start: the listener keeps trying)."""
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name=f"listen:{self.channel}")
        try:
            async with asyncio.timeout(wait):
                await self.subscribed.wait()
        except TimeoutError:
            log.warning("channel_not_subscribed_yet", channel=self.channel)

    async def stop(self) -> None:
        """Stop listening, within ``STOP_TIMEOUT`` whatever state the connection is in."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
        if not done:
            # A client library caught in a reconnect can hold a cancellation back: the task
            # ends at its next turn (``_stopping``) and is not waited for.
            log.warning("channel_listener_did_not_stop", channel=self.channel)

    async def _listen(self) -> None:
        again = False
        while not self._stopping:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    if self._stopping:
                        return
                    self.subscribed.set()
                    await self.on_subscribed(again)
                    async for message in pubsub.listen():
                        if self._stopping:
                            return
                        if message.get("type") != "message":
                            continue
                        data = message.get("data")
                        await self.on_message(
                            data.decode() if isinstance(data, bytes) else str(data)
                        )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect; each user bounds staleness meanwhile
                if self.subscribed.is_set():
                    log.warning("channel_lost", channel=self.channel, error=str(exc))
                self.subscribed.clear()
                self.on_lost()
            again = True
            await asyncio.sleep(self.retry_after)
