"""The LISTEN connection of the event loops (``Wakeups``) on the real PostgreSQL: closing it
while its connection is being made ends it, so a relay job that failed (PostgreSQL restarting)
is started again instead of waiting for ever in its cleanup (ADR 0179)."""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy import text

from plexica.events.loop import OUTBOX_CHANNEL, Loop, Wakeups
from plexica.kit.db import Database
from plexica_sdk.revocation import listen_connect


async def test_closing_as_the_connection_is_made_ends_the_watch(db: Database) -> None:
    real = listen_connect(db.engine, "plexica-test-wakeups")
    made: list[asyncpg.Connection] = []
    closing: list[asyncio.Task[None]] = []

    async def connect() -> asyncpg.Connection:
        conn = await real()
        made.append(conn)
        # The job's cleanup (aclose) runs in the very turn the connection arrives.
        closing.append(asyncio.create_task(wakeups.aclose()))
        await asyncio.sleep(0)
        return conn

    wakeups = Wakeups(connect)
    wakeups.add(OUTBOX_CHANNEL, Loop())
    wakeups.start()
    try:
        async with asyncio.timeout(60):
            while not closing:
                await asyncio.sleep(0.01)
            await asyncio.wait_for(asyncio.shield(closing[0]), 10)  # before: waited for ever
        assert not wakeups.listening.is_set()
    finally:
        for conn in made:
            await conn.close()


async def test_the_watch_listens_again_after_its_connection_is_lost(db: Database) -> None:
    wakeups = Wakeups(listen_connect(db.engine, "plexica-test-wakeups"), retry_seconds=0.1)
    loop = Loop()
    wakeups.add(OUTBOX_CHANNEL, loop)
    wakeups.start()
    try:
        async with asyncio.timeout(60):
            await wakeups.listening.wait()
            async with db.session() as session:  # the server ends the LISTEN connection
                await session.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE application_name = 'plexica-test-wakeups'"
                    )
                )
            while wakeups.listening.is_set():
                await asyncio.sleep(0.01)
            loop.wake.clear()
            await wakeups.listening.wait()
            await loop.wake.wait()  # woken on reconnecting: it may have missed work
    finally:
        await wakeups.aclose()
