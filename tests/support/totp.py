"""An authenticator app for tests: the code of a base32 secret at a given time."""

from __future__ import annotations

import base64
import time

from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP


def code_at(secret: str, at: float | None = None) -> str:
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    totp = TOTP(key, 6, SHA1(), 30, enforce_key_length=False)
    return totp.generate(int(time.time() if at is None else at)).decode()


def next_code(secret: str) -> str:
    """The code of the next 30-second step: later than any a sign-in used up to now, and still
    inside the provider's window of one step of drift."""
    return code_at(secret, time.time() + 30)
