import json
import logging

import pytest
import structlog

from plexica.kit.db import quote_ident
from plexica_sdk.observability import configure_logging, valid_id


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
