"""Service-client cut-offs for token verification (ADR 0016).

Disabling, rotating or revoking a service client records ``revoked_before`` (epoch seconds): a
token of that client issued before it is refused. Verification asks this class on every request,
so it answers from a map in memory: the cut-offs of the last hour (older ones outlive every
token), reloaded in the background every ``ttl`` seconds. The process that made the change
notes it at once; the other replicas pick it up within ``ttl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from sqlalchemy.exc import SQLAlchemyError

from plexica.identity import repository
from plexica.identity.jwt import Issuer
from plexica.kit.db import Database

log = structlog.get_logger("plexica.identity.revocation")
HORIZON_SECONDS = 3600  # longer than any access token's lifetime (built-in 300 s, realm 300 s)


class ClientCutoffs:
    def __init__(self, db: Database, issuer_base_url: str, *, ttl: float = 5.0) -> None:
        self.db = db
        self.prefix = issuer_base_url.rstrip("/") + "/realms/"
        self.ttl = ttl
        self._cutoffs: dict[tuple[str, str], int] = {}
        self._loaded_at = float("-inf")
        self._task: asyncio.Task[None] | None = None
        # Noted here, kept over reloads for a while: a reload may have read before the commit.
        self._noted: dict[tuple[str, str], tuple[int, float]] = {}

    def revoked(self, issuer: Issuer, client_id: str, issued_at: int) -> bool:
        if time.monotonic() - self._loaded_at > self.ttl and self._task is None:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to schedule on
                self._task = asyncio.get_running_loop().create_task(self._reload())
        cutoff = self._cutoffs.get((issuer.url, client_id))
        return cutoff is not None and issued_at < cutoff

    def note(self, realm: str, client_id: str, revoked_before: int) -> None:
        key = (self.prefix + realm, client_id)
        self._noted[key] = (revoked_before, time.monotonic())
        self._cutoffs = {**self._cutoffs, key: max(revoked_before, self._cutoffs.get(key, 0))}

    async def load(self) -> None:
        """Load now (at start-up, so that the first requests already see every cut-off)."""
        async with self.db.session() as session:
            rows = await repository.client_cutoffs(session, int(time.time()) - HORIZON_SECONDS)
        cutoffs = {(self.prefix + realm, client): cut for realm, client, cut in rows}
        now = time.monotonic()
        self._noted = {k: v for k, v in self._noted.items() if now - v[1] < 60.0}
        for key, (cut, _) in self._noted.items():
            cutoffs[key] = max(cut, cutoffs.get(key, 0))
        self._cutoffs = cutoffs
        self._loaded_at = now

    async def aclose(self) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _reload(self) -> None:
        try:
            await self.load()
        except (OSError, SQLAlchemyError) as exc:
            # Keep the map we have; tokens live minutes, and the next request retries.
            log.warning("client_cutoffs_reload_failed", error=str(exc))
            self._loaded_at = time.monotonic() - self.ttl + 1.0
        finally:
            self._task = None
