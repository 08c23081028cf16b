"""The browser session and the shell's keys.

The session cookie is an opaque random id; the session itself (tokens, CSRF secret) lives in the
database (``SessionStore``, ADR 0120). ``PLEXICA_WEB_SECRET`` keys the lookup hash of that id, the
encryption of the stored tokens and the signature of the short sign-in cookie, so that every
replica shares every session (ADR 0091)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import structlog
from pydantic import SecretStr

from plexica.kit.datadir import persisted_secret
from plexica.settings import Settings

log = structlog.get_logger("plexica.web")
SECRET_FILE = "web-secret"  # noqa: S105 - a file name

SESSION_COOKIE = "plexica_session"
LOGIN_COOKIE = "plexica_login"
# Over https the cookies are host-only, Secure and Path=/ by the browser's own rule (ADR 0122).
HOST_PREFIX = "__Host-"
LOGIN_MAX_AGE = 600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def session_key(settings: Settings) -> bytes:
    """The HMAC key of the cookies, from ``PLEXICA_WEB_SECRET``."""
    if settings.web_secret is not None:
        secret = settings.web_secret.get_secret_value().encode()
    else:
        log.warning(
            "web_secret_missing",
            hint="set PLEXICA_WEB_SECRET: without it each replica signs its own sessions",
        )
        secret = secrets.token_bytes(32)
    # Derived, so that the raw secret is never the key of anything else.
    return hashlib.sha256(b"plexica-web-session\0" + secret).digest()


def with_persisted_secret(settings: Settings, data_dir: Path) -> Settings:
    """``plexica up`` without ``PLEXICA_WEB_SECRET``: a secret generated once and kept in the
    data directory (mode 0600), so that a restart keeps everyone signed in."""
    if settings.web_secret is not None:
        return settings
    value = persisted_secret(data_dir / SECRET_FILE)
    return settings.model_copy(update={"web_secret": SecretStr(value)})


class Signer:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def dumps(self, value: dict[str, Any]) -> str:
        body = _b64(json.dumps({"v": value, "t": int(time.time())}, separators=(",", ":")).encode())
        return f"{body}.{self._mac(body)}"

    def loads(self, text: str | None, max_age: int) -> dict[str, Any] | None:
        if not text or "." not in text:
            return None
        body, _, mac = text.rpartition(".")
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            data = json.loads(_unb64(body))
        except ValueError:
            return None
        if not isinstance(data, dict) or int(data.get("t", 0)) + max_age < time.time():
            return None
        value = data.get("v")
        return value if isinstance(value, dict) else None

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())


@dataclass
class WebSession:
    """A signed-in browser: its tokens and CSRF secret, kept server-side (``SessionStore``);
    ``id`` is the row's public id once stored, never the cookie's value."""

    realm: str
    access_token: str
    refresh_token: str | None
    expires_at: float
    id_token: str | None = None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    id: UUID | None = None
    # When the provider's refresh token dies (its idle time, never past the tenant's session
    # length, ADR 0243): the web session ends with it. None: the store's own lifetime.
    ends_at: float | None = None

    def claims(self) -> dict[str, Any]:
        """The access token's claims, unverified: the shell received the token from the token
        endpoint itself and keeps it server-side; the core verifies it on every call."""
        try:
            payload = self.access_token.split(".")[1]
            data = json.loads(_unb64(payload))
        except (IndexError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def subject(self) -> str:
        return str(self.claims().get("sub", ""))

    def roles(self) -> set[str]:
        access = self.claims().get("realm_access") or {}
        return {str(r) for r in access.get("roles", [])} if isinstance(access, dict) else set()

    def support(self) -> dict[str, str] | None:
        """A support session's banner (ADR 0240): the operator its token's ``act`` names, the
        user, and when it ends; None for a user's own session."""
        claims = self.claims()
        act = claims.get("act")
        if not isinstance(act, dict):
            return None
        ends = datetime.fromtimestamp(float(claims.get("exp", self.expires_at)), UTC)
        return {
            "operator": str(act.get("email") or act.get("sub") or "an operator"),
            "user": str(claims.get("email") or claims.get("sub") or ""),
            "ends": ends.strftime("%H:%M:%S UTC"),
        }

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, self.csrf)
