"""SQL of the secrets sealed beside the signing keys (``sealed``): in each table, the columns
``sealed_secret`` and ``sealed_with`` of the row its key column names."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from plexica_sdk.db import fetch_all


class SealedSecrets:
    def __init__(self, table: str, key: str) -> None:
        self._table = sa.table(
            table,
            sa.column(key),
            sa.column("sealed_secret"),
            sa.column("sealed_with"),
            schema="platform",
        )
        self._key = self._table.c[key]

    async def rows(self, session: AsyncSession) -> list[dict[str, Any]]:
        """Every row (``key``, ``sealed_secret``, ``sealed_with``), locked."""
        t = self._table
        return await fetch_all(
            session,
            sa.select(self._key.label("key"), t.c.sealed_secret, t.c.sealed_with).with_for_update(),
        )

    async def store(self, session: AsyncSession, key: Any, token: str, key_id: str) -> None:
        await session.execute(
            sa.update(self._table)
            .where(self._key == key)
            .values(sealed_secret=token, sealed_with=key_id)
        )
