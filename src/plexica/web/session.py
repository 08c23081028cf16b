"""The browser session: a signed cookie (HMAC-SHA256) holding the user's tokens and CSRF secret.

Signed, not encrypted: the cookie is HttpOnly, so only the user's own browser holds the tokens it
was issued anyway (ADR 0090)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

SESSION_COOKIE = "plexica_session"
LOGIN_COOKIE = "plexica_login"
SESSION_MAX_AGE = 8 * 3600
LOGIN_MAX_AGE = 600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


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
