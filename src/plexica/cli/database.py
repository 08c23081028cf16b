"""A command's work straight on the platform's database (ADR 0165): one small pool for the
command, closed when the work ends, and the identity provider beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from plexica.identity.adapter import IdentityAdapter
    from plexica.kit.db import Database
    from plexica.settings import Settings

T = TypeVar("T")


def run_on_database(
    settings: Settings, work: Callable[[Database], Awaitable[T]], *, pool_size: int
) -> T:
    """``work`` on a pool of ``pool_size`` connections, disposed of after; its errors go up."""
    import asyncio

    from plexica.kit.db import Database

    async def main() -> T:
        db = Database(settings.sqlalchemy_url, pool_size=pool_size)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(main())


@asynccontextmanager
async def identity_provider(settings: Settings, db: Database) -> AsyncIterator[IdentityAdapter]:
    """The configured provider (built-in or Keycloak); its HTTP client is closed after."""
    from plexica.composition import identity_adapter

    adapter = identity_adapter(settings, db)
    try:
        yield adapter
    finally:
        aclose = getattr(adapter, "aclose", None)
        if aclose is not None:
            await aclose()
