"""The browser session: a signed cookie (HMAC-SHA256) holding the user's tokens and CSRF secret.

Signed, not encrypted: the cookie is HttpOnly, so only the user's own browser holds the tokens it
was issued anyway (ADR 0090). The key comes from ``PLEXICA_WEB_SECRET`` so that every replica
accepts every session (ADR 0091)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog
from pydantic import SecretStr

from plexica.settings import Settings

log = structlog.get_logger("plexica.web")
SECRET_FILE = "web-secret"  # noqa: S105 - a file name

SESSION_COOKIE = "plexica_session"
LOGIN_COOKIE = "plexica_login"
SESSION_MAX_AGE = 8 * 3600
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
    path = data_dir / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text().strip()
    else:
        value = secrets.token_urlsafe(48)
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
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
    realm: str
    access_token: str
    refresh_token: str | None
    expires_at: float
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WebSession | None:
        try:
            return cls(
                realm=str(data["realm"]),
                access_token=str(data["access_token"]),
                refresh_token=data.get("refresh_token"),
                expires_at=float(data["expires_at"]),
                csrf=str(data["csrf"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def claims(self) -> dict[str, Any]:
        """The access token's claims, unverified: only for what the shell shows; the core
        verifies the token on every call."""
        try:
            payload = self.access_token.split(".")[1]
            data = json.loads(_unb64(payload))
        except (IndexError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def roles(self) -> set[str]:
        access = self.claims().get("realm_access") or {}
        return {str(r) for r in access.get("roles", [])} if isinstance(access, dict) else set()

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, self.csrf)
