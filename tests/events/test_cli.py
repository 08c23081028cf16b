"""``plexica events dead-letters`` run as an operator runs it, against the real database."""

from __future__ import annotations

import asyncio
import json
import uuid

from sqlalchemy import text
from typer.testing import CliRunner, Result

from plexica.cli.main import app
from plexica.events.repository import dead_letters
from plexica.kit.db import Database
from plexica_sdk.events import Event


def plexica(database_url: str, *args: str) -> Result:
    """The real command, in-process (its own event loop, in the caller's worker thread)."""
    return CliRunner().invoke(app, ["events", *args], env={"PLEXICA_DATABASE_URL": database_url})


async def test_operator_lists_retries_and_discards_dead_letters(
    db: Database, database_url: str
) -> None:
    tenant = uuid.uuid4()
    letters = [uuid.uuid4(), uuid.uuid4()]
    async with db.session() as s:
        for dl in letters:
            ev = Event(source="/t", type="crm.deal.won", tenant_id=tenant)
            await dead_letters.insert_dead_letter(
                s, dl, "crm", ev.model_dump(mode="json"), "boom", 5
            )

    def run(*args: str) -> Result:
        return plexica(database_url, *args)

    listed = await asyncio.to_thread(run, "dead-letters", "list", "--json", "--plugin", "crm")
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert {r["id"] for r in rows} == {str(x) for x in letters}

    retried = await asyncio.to_thread(run, "dead-letters", "retry", str(letters[0]))
    assert retried.exit_code == 0, retried.output
    discarded = await asyncio.to_thread(run, "dead-letters", "discard", str(letters[1]))
    assert discarded.exit_code == 0, discarded.output
    again = await asyncio.to_thread(run, "dead-letters", "discard", str(letters[1]))
    assert again.exit_code != 0
    assert "dead_letter_resolved" in again.output
    missing = await asyncio.to_thread(run, "dead-letters", "retry", str(uuid.uuid4()))
    assert "dead_letter_not_found" in missing.output

    async with db.session() as s:
        queued = await s.scalar(
            text("SELECT count(*) FROM platform.event_deliveries WHERE reason = 'dlq-retry'")
        )
    assert queued == 1
    pending = await asyncio.to_thread(run, "dead-letters", "list", "--json")
    assert pending.output.strip() == ""
