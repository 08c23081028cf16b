"""Server-side web sessions (ADR 0120): the cookie holds a random id, the database its session.

Only an HMAC of the id is stored, so a copy of the table opens no session; the tokens are stored
encrypted (AES-GCM, bound to the row's id), so it holds no usable token either. Both keys derive
from ``PLEXICA_WEB_SECRET``: every replica with the same secret shares every session."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.ext.asyncio import AsyncEngine

from plexica.kit.db import Database
from plexica.web import repository
from plexica.web.repository import NewSession, SessionRow
from plexica.web.session import WebSession

SESSION_LIFETIME = 8 * 3600  # without word from the provider: a refresh token's default
MAX_LIFETIME = 720 * 3600  # the longest sign-in session a tenant may choose (ADR 0243)
_NONCE = 12


def _derive(key: bytes, label: bytes) -> bytes:
    return hmac.new(key, b"plexica-web\0" + label, hashlib.sha256).digest()


class SessionStore:
    def __init__(self, db: Database, key: bytes, lifetime: int = SESSION_LIFETIME) -> None:
        # One statement per call, no transaction around it (see repository).
        self._engine: AsyncEngine = db.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._locking = db.engine
        self._lookup = _derive(key, b"lookup")
        self._seal = AESGCM(_derive(key, b"tokens"))
        self.lifetime = lifetime

    def _hash(self, raw: str) -> bytes:
        return hmac.new(self._lookup, raw.encode(), hashlib.sha256).digest()

    def _encrypt(self, session_id: uuid.UUID, session: WebSession) -> bytes:
        plain = json.dumps(
            {"a": session.access_token, "r": session.refresh_token, "i": session.id_token}
        ).encode()
        nonce = os.urandom(_NONCE)
        return nonce + self._seal.encrypt(nonce, plain, session_id.bytes)

    def _decrypt(self, row: SessionRow) -> WebSession | None:
        try:
            plain = self._seal.decrypt(row.tokens[:_NONCE], row.tokens[_NONCE:], row.id.bytes)
            data = json.loads(plain)
        except (InvalidTag, ValueError):
            return None  # sealed under another secret: not a session of this deployment
        return WebSession(
            realm=row.realm,
            access_token=str(data["a"]),
            refresh_token=data.get("r"),
            id_token=data.get("i"),
            expires_at=row.access_expires_at.timestamp(),
            csrf=row.csrf,
            id=row.id,
        )

    async def create(self, session: WebSession, *, user_agent: str, ip: str) -> str:
        """Stores a new session and returns the cookie's value; expired rows go in passing."""
        raw = secrets.token_urlsafe(32)
        session.id = uuid.uuid4()
        new = NewSession(
            id=session.id,
            token_hash=self._hash(raw),
            realm=session.realm,
            subject=session.subject,
            tokens=self._encrypt(session.id, session),
            access_expires_at=_at(session.expires_at),
            csrf=session.csrf,
            user_agent=user_agent[:400],
            ip=ip[:64],
            lifetime_seconds=self._lifetime(session),
        )
        async with self._engine.connect() as conn:
            await repository.insert(conn, new)
            await repository.delete_expired(conn)
        return raw

    def _lifetime(self, session: WebSession) -> int:
        if session.ends_at is None:
            return self.lifetime
        return max(1, min(MAX_LIFETIME, int(session.ends_at - time.time())))

    def _ends(self, session: WebSession) -> datetime | None:
        return None if session.ends_at is None else _at(time.time() + self._lifetime(session))

    async def load(self, raw: str | None) -> WebSession | None:
        if not raw or len(raw) > 200:
            return None
        async with self._engine.connect() as conn:
            found = await repository.find_live(conn, self._hash(raw))
            if found is None:
                return None
            row, stale = found
            if stale:
                await repository.touch(conn, row.id)
        return self._decrypt(row)

    async def refresh(
        self,
        session: WebSession,
        due: Callable[[WebSession], bool],
        renew: Callable[[WebSession], Awaitable[WebSession]],
    ) -> WebSession | None:
        """Renews the tokens of a session whose access token is ``due``, one request at a time:
        the provider treats a refresh token presented twice as stolen and ends the whole sign-in
        session, so a second request (another tab, another replica) waits on the row lock and
        then takes the tokens the first one stored. None: the session was ended meanwhile."""
        assert session.id is not None
        async with self._locking.begin() as conn:
            row = await repository.lock(conn, session.id)
            current = None if row is None else self._decrypt(row)
            if current is None:
                return None
            if not due(current):
                return current
            fresh = await renew(current)
            await repository.update_tokens(
                conn, session.id, self._encrypt(session.id, fresh), _at(fresh.expires_at),
                self._ends(fresh),
            )  # fmt: skip
            return fresh

    async def save_tokens(self, session: WebSession) -> bool:
        """After a refresh: False when the session was ended meanwhile (it stays ended)."""
        assert session.id is not None
        async with self._engine.connect() as conn:
            return await repository.update_tokens(
                conn, session.id, self._encrypt(session.id, session), _at(session.expires_at),
                self._ends(session),
            )  # fmt: skip

    async def of_user(self, realm: str, subject: str) -> list[SessionRow]:
        async with self._engine.connect() as conn:
            return await repository.of_user(conn, realm, subject)

    async def delete(
        self,
        realm: str,
        subject: str | None = None,
        session_id: uuid.UUID | None = None,
        keep: uuid.UUID | None = None,
    ) -> list[WebSession]:
        """Deletes a user's sessions (or one, or all but ``keep``) of a realm; returns them,
        tokens readable, for the provider-side revocation."""
        async with self._engine.connect() as conn:
            rows = await repository.delete(conn, realm, subject, session_id, keep)
        return [s for s in map(self._decrypt, rows) if s is not None]


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def agent_summary(user_agent: str) -> str:
    """ "Firefox on Linux" from a User-Agent header, for the sessions page; never trusted."""
    ua = user_agent
    browser = next(
        (
            name
            for token, name in (
                ("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"),
                ("Chromium/", "Chromium"), ("HeadlessChrome/", "Chrome (headless)"),
                ("Chrome/", "Chrome"), ("Safari/", "Safari"), ("curl/", "curl"),
                ("python-httpx/", "httpx"),
            )
            if token in ua
        ),
        "Unknown browser",
    )  # fmt: skip
    system = next(
        (
            name
            for token, name in (
                ("Android", "Android"), ("iPhone", "iOS"), ("iPad", "iPadOS"),
                ("Windows", "Windows"), ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"),
                ("Linux", "Linux"),
            )
            if token in ua
        ),
        None,
    )  # fmt: skip
    return f"{browser} on {system}" if system else browser
