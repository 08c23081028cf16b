"""Token revocation: what verification refuses, held in memory, kept fresh by NOTIFY (ADR 0115).

The platform records revocations in its database: per (realm, subject) and per (realm, client)
cut-offs ("tokens issued before T are refused": a disabled user, a removed role, ended
sessions, a revoked service client), revoked sign-in sessions (the token's ``sid``: sign-out)
and suspended realms. Every verification, cached or not, asks ``RevocationList.check``: a few
dict lookups on an immutable snapshot. The snapshot is re-read from the database when the
channel ``plexica_revocations`` fires (the notification is only a wake-up: the data is always
read from the table) and, as a safety net, every ``poll_seconds``; while the listener is down,
every ``retry_seconds``. A read that fails keeps the last snapshot (tokens live minutes).

The core reads the table itself; a plugin process reads it through ``plugin_api.revocations()``
on its own login (``plugin_loader``), which returns only the realms of its tenants.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg
import structlog
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from plexica_sdk.errors import ForbiddenError

log = structlog.get_logger("plexica_sdk.revocation")

CHANNEL = "plexica_revocations"
SUBJECT, CLIENT, SESSION, REALM = "subject", "client", "session", "realm"
Refusal = Literal["revoked", "suspended"]


class TenantSuspendedError(ForbiddenError):
    code = "tenant_suspended"


@dataclass(frozen=True, slots=True)
class Revocation:
    realm: str
    kind: str
    key: str
    before: int


@dataclass(frozen=True, slots=True)
class Stamp:
    """What revocation looks at in a verified token."""

    realm: str
    subject: str
    client_id: str | None
    session_id: str | None
    issued_at: int

    @classmethod
    def of(cls, issuer: str, claims: Mapping[str, Any]) -> Stamp:
        """From the claims of a token already verified for ``issuer`` (``<base>/<realm>``)."""
        azp, sid, iat = claims.get("azp"), claims.get("sid"), claims.get("iat")
        return cls(
            issuer.rsplit("/", 1)[-1],
            str(claims.get("sub", "")),
            azp if isinstance(azp, str) else None,
            sid if isinstance(sid, str) else None,
            int(iat) if isinstance(iat, int | float) and not isinstance(iat, bool) else 0,
        )


@dataclass(frozen=True)
class _Snapshot:
    subjects: dict[tuple[str, str], int] = field(default_factory=dict)
    clients: dict[tuple[str, str], int] = field(default_factory=dict)
    sessions: frozenset[tuple[str, str]] = frozenset()
    realms: frozenset[str] = frozenset()

    @classmethod
    def build(cls, entries: Iterable[Revocation]) -> _Snapshot:
        subjects: dict[tuple[str, str], int] = {}
        clients: dict[tuple[str, str], int] = {}
        sessions: set[tuple[str, str]] = set()
        realms: set[str] = set()
        for e in entries:
            if e.kind == SUBJECT:
                subjects[e.realm, e.key] = max(e.before, subjects.get((e.realm, e.key), 0))
            elif e.kind == CLIENT:
                clients[e.realm, e.key] = max(e.before, clients.get((e.realm, e.key), 0))
            elif e.kind == SESSION:
                sessions.add((e.realm, e.key))
            elif e.kind == REALM:
                realms.add(e.realm)
        return cls(subjects, clients, frozenset(sessions), frozenset(realms))


def refusal(snapshot: _Snapshot, stamp: Stamp) -> Refusal | None:
    if stamp.realm in snapshot.realms:
        return "suspended"
    cut = snapshot.subjects.get((stamp.realm, stamp.subject))
    if cut is not None and stamp.issued_at < cut:
        return "revoked"
    if stamp.session_id is not None and (stamp.realm, stamp.session_id) in snapshot.sessions:
        return "revoked"
    if stamp.client_id is not None:
        cut = snapshot.clients.get((stamp.realm, stamp.client_id))
        if cut is not None and stamp.issued_at < cut:
            return "revoked"
    return None


Loader = Callable[[], Awaitable[list[Revocation]]]
Connect = Callable[[], Awaitable[asyncpg.Connection]]
NOTED_SECONDS = 60.0


class RevocationsUnavailableError(Exception):
    """The loader can never succeed (e.g. not a plugin login): stop trying."""


class RevocationList:
    """The ``RevocationCheck`` of a process: ``check`` answers from memory; ``start`` keeps it
    fresh (LISTEN on a connection of its own made by ``connect``, plus a slow poll)."""

    def __init__(
        self,
        load: Loader,
        connect: Connect | None = None,
        *,
        poll_seconds: float = 30.0,
        retry_seconds: float = 2.0,
    ) -> None:
        self._load = load
        self._connect = connect
        self.poll_seconds = poll_seconds
        self.retry_seconds = retry_seconds
        self._snapshot = _Snapshot()
        self._noted: list[tuple[float, Revocation]] = []
        self._task: asyncio.Task[None] | None = None
        self.loads = 0  # how many snapshots were read (tests and metrics)
        self.connections = 0  # how many times the listener connected
        self.listening = asyncio.Event()

    def check(self, stamp: Stamp) -> Refusal | None:
        return refusal(self._snapshot, stamp)

    def note(self, *entries: Revocation) -> None:
        """Refuse at once in this process (it made the change; the wake-up is on its way).
        Kept over reloads for a while: a reload may have read before the commit. Cut-offs and
        sessions only: a realm's suspension is lifted again, so it comes from the table."""
        now = time.monotonic()
        self._noted = [(t, e) for t, e in self._noted if now - t < NOTED_SECONDS]
        self._noted += [(now, e) for e in entries if e.kind != REALM]
        current = self._snapshot
        self._snapshot = _Snapshot.build(
            [*_entries(current), *(e for e in entries if e.kind != REALM)]
        )

    async def load(self) -> None:
        entries = await self._load()
        now = time.monotonic()
        self._noted = [(t, e) for t, e in self._noted if now - t < NOTED_SECONDS]
        self._snapshot = _Snapshot.build([*entries, *(e for _, e in self._noted)])
        self.loads += 1

    async def start(self) -> None:
        """Load now (so that the first requests see every revocation), then keep watching."""
        try:
            await self.load()
        except RevocationsUnavailableError as exc:
            log.warning("revocations_unavailable", error=str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - the watcher retries; serving must not wait
            log.warning("revocations_load_failed", error=str(exc))
        if self._task is None:
            self._task = asyncio.create_task(self._watch(), name="revocations")

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
                # The listening connection was lost; the next connection reads first.
                await asyncio.sleep(0.2)
            except RevocationsUnavailableError as exc:
                log.warning("revocations_unavailable", error=str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - keep the last snapshot and try again
                log.warning("revocations_watch_failed", error=str(exc))
                await asyncio.sleep(self.retry_seconds)

    async def _follow(self) -> None:
        """Read on every wake-up until the listening connection is lost (then return)."""
        woke = asyncio.Event()
        conn: asyncpg.Connection | None = None
        try:
            if self._connect is not None:
                async with asyncio.timeout(10.0):  # not wait_for: it can drop a cancel (3.11)
                    conn = await self._connect()
                await conn.add_listener(CHANNEL, lambda *_: woke.set())
                conn.add_termination_listener(lambda _: woke.set())
                self.connections += 1
                self.listening.set()
            interval = self.poll_seconds if conn is not None else self.retry_seconds
            while conn is None or not conn.is_closed():
                woke.clear()  # before reading: a change committed meanwhile wakes us again
                await self.load()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woke.wait(), interval)
        finally:
            self.listening.clear()
            if conn is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5.0):
                        await conn.close()


def _entries(snapshot: _Snapshot) -> list[Revocation]:
    return [
        *(Revocation(r, SUBJECT, k, b) for (r, k), b in snapshot.subjects.items()),
        *(Revocation(r, CLIENT, k, b) for (r, k), b in snapshot.clients.items()),
        *(Revocation(r, SESSION, k, 0) for r, k in snapshot.sessions),
        *(Revocation(r, REALM, "", 0) for r in snapshot.realms),
    ]


def listen_connect(engine: AsyncEngine, application_name: str = "plexica-revocations") -> Connect:
    """A dedicated connection (not from the pool) with the engine's credentials, for LISTEN."""
    _, params = engine.dialect.create_connect_args(engine.url)

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(
            **params, server_settings={"application_name": application_name}
        )

    return connect


def plugin_loader(engine: AsyncEngine) -> Loader:
    """Revocations of the plugin's tenants' realms, through the platform's function."""

    async def load() -> list[Revocation]:
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text("SELECT realm, kind, key, before FROM plugin_api.revocations()")
                )
                return [Revocation(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]
        except DBAPIError as exc:
            # 42501: not a plugin login; 42883: a platform without the function.
            if _sqlstate(exc) in ("42501", "42883", "3F000"):
                raise RevocationsUnavailableError(str(exc.orig)) from None
            raise

    return load


def _sqlstate(exc: DBAPIError) -> str | None:
    for err in (exc.orig, getattr(exc.orig, "__cause__", None)):
        state = getattr(err, "sqlstate", None)
        if isinstance(state, str):
            return state
    return None


def plugin_revocations(engine: AsyncEngine, **kwargs: Any) -> RevocationList:
    return RevocationList(plugin_loader(engine), listen_connect(engine), **kwargs)
