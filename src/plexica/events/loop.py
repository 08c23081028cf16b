"""Background loops of the event machinery, woken by PostgreSQL ``NOTIFY`` (ADR 0190).

A loop works while there is work, then sleeps until its channel is notified, it is asked to
stop, or its slow safety poll comes round (a lost notification, a lease that expired, a retry
that fell due). Triggers on the outbox and the delivery queue notify on every insert, so an
idle process makes no queries but the safety poll.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog

from plexica_sdk.revocation import Connect

log = structlog.get_logger("plexica.events.loop")

OUTBOX_CHANNEL = "plexica_outbox"
DELIVERIES_CHANNEL = "plexica_deliveries"


class Loop:
    """A background loop that finishes its current step, then returns, when asked to stop.

    ``wake`` (set by ``Wakeups``) cuts a ``pause`` short; a loop clears it before it looks for
    work, so a notification that arrives during a step is not lost."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def idle(self, seconds: float) -> None:
        """Sleep until woken, stopped, or ``seconds`` passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), seconds)

    async def run(self) -> None:
        raise NotImplementedError


class Wakeups:
    """One LISTEN connection per process, shared by its loops: a notification on a channel
    wakes every loop that listens to it. When the connection is lost every loop is woken (it
    may have missed work) and the connection is made again."""

    def __init__(self, connect: Connect, *, retry_seconds: float = 2.0) -> None:
        self._connect = connect
        self.retry_seconds = retry_seconds
        self._loops: dict[str, list[Loop]] = {}
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    def add(self, channel: str, loop: Loop) -> None:
        self._loops.setdefault(channel, []).append(loop)

    def _wake(self, channel: str | None) -> None:
        for name, loops in self._loops.items():
            if channel is None or name == channel:
                for loop in loops:
                    loop.wake.set()

    def start(self) -> None:
        if self._task is None and self._loops:
            self._task = asyncio.create_task(self._watch(), name="events.wakeups")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        while True:
            try:
                await self._follow()
            except Exception as exc:  # noqa: BLE001 - the safety poll covers while we retry
                log.warning("events_listen_failed", error=repr(exc))
            self._wake(None)
            await asyncio.sleep(self.retry_seconds)

    async def _follow(self) -> None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for drops a cancellation that arrives as
        # the connection is made, and aclose() then waited for ever: the relay stopped for good
        # after a PostgreSQL restart (ADR 0179).
        async with asyncio.timeout(10.0):
            conn: asyncpg.Connection = await self._connect()
        lost = asyncio.Event()
        try:
            for channel in self._loops:
                await conn.add_listener(channel, lambda _c, _p, ch, _m: self._wake(ch))
            conn.add_termination_listener(lambda _c: lost.set())
            self.listening.set()
            self._wake(None)  # work committed before we listened
            await lost.wait()
        finally:
            self.listening.clear()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5.0):
                    await conn.close()
