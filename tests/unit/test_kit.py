import json
import logging

import asyncpg
import pytest
import structlog
from sqlalchemy import text

from plexica.kit.db import Database, quote_ident
from plexica.settings import Settings
from plexica_sdk.logs import configure_logging
from plexica_sdk.observability import valid_id


@pytest.mark.parametrize("name", ["platform", "tenant_acme", "t1"])
def test_quote_ident_accepts_our_identifiers(name: str) -> None:
    assert quote_ident(name) == f'"{name}"'


@pytest.mark.parametrize("name", ['a"b', "a;drop", "Upper", "", "x" * 64, "1abc", "a b", "é"])
def test_quote_ident_refuses_anything_else(name: str) -> None:
    with pytest.raises(ValueError, match="not a valid schema identifier"):
        quote_ident(name)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("abcdef12", True), ("x" * 129, False), ("a\nb" * 4, False), ("short", False), (None, False)],
)
def test_ids_from_clients_are_validated(value: str | None, ok: bool) -> None:
    assert (valid_id(value) is not None) == ok


def test_json_logs_carry_context_and_redact_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("core", "INFO", "json")
    structlog.contextvars.bind_contextvars(trace_id="t-123456789", tenant_id="acme")
    try:
        structlog.get_logger("test").info("hello", password="hunter2", token="abc")
        logging.getLogger("uvicorn.error").info("stdlib line")
    finally:
        structlog.contextvars.clear_contextvars()
    lines = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    first, second = lines[-2], lines[-1]
    assert first["event"] == "hello"
    assert first["service"] == "core"
    assert first["trace_id"] == "t-123456789"
    assert first["tenant_id"] == "acme"
    assert first["password"] == "[redacted]"
    assert first["token"] == "[redacted]"
    assert {"timestamp", "level"} <= set(first)
    assert second["event"] == "stdlib line"
    assert second["service"] == "core"


async def test_sessions_replace_pooled_connections_the_server_closed(database_url: str) -> None:
    """No ping per checkout (ADR 0086): a session whose pooled connection the server closed
    (a restart, an idle timeout) runs on a new connection."""
    db = Database(Settings(database_url=database_url).sqlalchemy_url, pool_size=2)
    try:
        async with db.session() as session:
            before = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        admin = await asyncpg.connect(database_url)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", before)
        finally:
            await admin.close()
        for _ in range(3):
            async with db.session() as session:
                after = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                assert after != before
                path = (await session.execute(text("SHOW search_path"))).scalar_one()
                assert path.startswith("platform")
    finally:
        await db.dispose()
