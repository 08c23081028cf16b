"""``plexica events dead-letters`` run as an operator runs it, against the real database."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

from sqlalchemy import text

from plexica.events import repository
from plexica.kit.db import Database
from plexica_sdk.events import Event


def plexica(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_")}
    env["PLEXICA_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "plexica.cli", "events", *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def test_operator_lists_retries_and_discards_dead_letters(
    db: Database, database_url: str
) -> None:
    tenant = uuid.uuid4()
    letters = [uuid.uuid4(), uuid.uuid4()]
    async with db.session() as s:
        for dl in letters:
            ev = Event(source="/t", type="crm.deal.won", tenant_id=tenant)
            await repository.insert_dead_letter(s, dl, "crm", ev.model_dump(mode="json"), "boom", 5)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return plexica(database_url, *args)

    listed = await asyncio.to_thread(run, "dead-letters", "list", "--json", "--plugin", "crm")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {r["id"] for r in rows} == {str(x) for x in letters}

    retried = await asyncio.to_thread(run, "dead-letters", "retry", str(letters[0]))
    assert retried.returncode == 0, retried.stderr
    discarded = await asyncio.to_thread(run, "dead-letters", "discard", str(letters[1]))
    assert discarded.returncode == 0, discarded.stderr
    again = await asyncio.to_thread(run, "dead-letters", "discard", str(letters[1]))
    assert again.returncode != 0
    assert "dead_letter_resolved" in again.stderr
    missing = await asyncio.to_thread(run, "dead-letters", "retry", str(uuid.uuid4()))
    assert "dead_letter_not_found" in missing.stderr

    async with db.session() as s:
        queued = await s.scalar(
            text("SELECT count(*) FROM platform.event_deliveries WHERE reason = 'dlq-retry'")
        )
    assert queued == 1
    pending = await asyncio.to_thread(run, "dead-letters", "list", "--json")
    assert pending.stdout.strip() == ""
