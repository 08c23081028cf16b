"""How the identity repositories read what a statement returns: whether it returned a row, the
first row as a dict (or None), or all of them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Executable


async def first_row(
    session: AsyncSession, statement: Executable, params: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    found = (await session.execute(statement, params)).mappings().first()
    return dict(found) if found else None


async def all_rows(
    session: AsyncSession, statement: Executable, params: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    return [dict(r) for r in (await session.execute(statement, params)).mappings()]


async def returned_row(
    session: AsyncSession, statement: Executable, params: Mapping[str, Any] | None = None
) -> bool:
    """Whether the statement (a ``RETURNING`` one, or a query) gave a row back."""
    return (await session.execute(statement, params)).first() is not None
