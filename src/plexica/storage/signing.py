"""HMAC-signed URLs for the local store: the core serves them, so the signature is the grant."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from plexica.storage.errors import InvalidSignatureError

SIGNED_PATH = "/v1/files/signed"
# Where the edge serves the core's API: a signed URL is public there (gateway.service).
EDGE_CORE_PREFIX = "/api/core"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_key(path: Path) -> bytes:
    """A per-installation secret kept beside the data (0600), created on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


class UrlSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def sign(self, claims: dict[str, Any], expires_in: int) -> tuple[str, int]:
        exp = int(time.time()) + expires_in
        payload = _b64(json.dumps({**claims, "exp": exp}, separators=(",", ":")).encode())
        mac = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return f"{payload}.{_b64(mac)}", exp

    def verify(self, token: str, method: str) -> dict[str, Any]:
        payload, _, mac = token.partition(".")
        try:
            expected = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _unb64(mac)):
                raise InvalidSignatureError("the signature is not valid")
            claims: dict[str, Any] = json.loads(_unb64(payload))
        except (ValueError, TypeError):
            raise InvalidSignatureError("the signature is not valid") from None
        if claims.get("m") != method:
            raise InvalidSignatureError("the URL was signed for another method")
        if int(claims.get("exp", 0)) < time.time():
            raise InvalidSignatureError("the URL has expired", code="signature_expired")
        return claims
