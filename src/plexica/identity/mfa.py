"""Two-step sign-in with TOTP (RFC 6238) in the built-in provider (ADR 0232).

A user enrols an authenticator (a 160-bit secret, sealed at rest with the key ring) and
confirms it with a first code; ten single-use recovery codes are shown then and kept only as
SHA-256. At sign-in, a right password on an account with TOTP opens a challenge (a random token
in the form, five minutes, five tries) that a current code or a recovery code answers. A code
is good once: the last accepted time step is kept and only a later one is taken, so a code seen
over a shoulder cannot be replayed. ``now`` is given by the caller (tests set the clock).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode
from uuid import UUID

from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.identity import custody
from plexica.identity import mfa_repository as repo
from plexica.kit.provisioning import REALM_PREFIX
from plexica_sdk.errors import ConflictError, PlexicaError

STEP = 30
DIGITS = 6
RECOVERY_CODES = 10
CHALLENGE_TTL = timedelta(minutes=5)
CHALLENGE_TRIES = 5


class InvalidCodeError(PlexicaError):
    status, code = 422, "invalid_mfa_code"

    def __init__(self) -> None:
        super().__init__("the code is not valid (or was used already)")


class MfaEnabledError(ConflictError):
    code = "mfa_already_enabled"

    def __init__(self) -> None:
        super().__init__("two-step sign-in is on already: turn it off first to enrol again")


class MfaNotEnabledError(ConflictError):
    code = "mfa_not_enabled"

    def __init__(self) -> None:
        super().__init__("two-step sign-in is not on for this account")


@dataclass(frozen=True)
class Enrolment:
    secret: str
    uri: str


@dataclass(frozen=True)
class Status:
    enabled: bool
    recovery_codes_left: int


def _totp(secret: bytes) -> TOTP:
    return TOTP(secret, DIGITS, SHA1(), STEP, enforce_key_length=False)  # noqa: S303 - RFC 6238's default, what every authenticator app uses


def _digits(code: str) -> str:
    return "".join(c for c in code if not c.isspace())


def matching_step(secret: bytes, code: str, now: float) -> int | None:
    """The time step (the current one or one either side, for clock drift) ``code`` is for."""
    code = _digits(code)
    if len(code) != DIGITS or not code.isdigit():
        return None
    current = int(now) // STEP
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(_totp(secret).generate(step * STEP), code.encode()):
            return step
    return None


def _secret_bytes(secret: str) -> bytes:
    return base64.b32decode(secret + "=" * (-len(secret) % 8))


def _recovery_hash(code: str) -> str:
    return hashlib.sha256(_digits(code).replace("-", "").lower().encode()).hexdigest()


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def status(session: AsyncSession, user_id: UUID) -> Status:
    row = await repo.totp_of(session, user_id)
    if row is None or row["confirmed_at"] is None:
        return Status(enabled=False, recovery_codes_left=0)
    left = await repo.recovery_codes_left(session, user_id)
    return Status(enabled=True, recovery_codes_left=left)


async def begin(session: AsyncSession, user_id: UUID, email: str, issuer: str) -> Enrolment:
    secret = base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")
    sealed = custody.ring().seal(secret)
    if not await repo.put_pending_totp(session, user_id, sealed.token, sealed.key_id):
        raise MfaEnabledError
    return _enrolment(secret, email, issuer)


async def _secret(row: dict[str, Any]) -> bytes:
    return _secret_bytes(custody.ring().open(row["sealed_secret"], row["sealed_with"]))


async def confirm(session: AsyncSession, user_id: UUID, code: str, now: float) -> list[str]:
    """Switch TOTP on with its first code; the recovery codes, shown once."""
    row = await repo.totp_of(session, user_id)
    if row is None:
        raise MfaNotEnabledError
    if row["confirmed_at"] is not None:
        raise MfaEnabledError
    step = matching_step(await _secret(row), code, now)
    if step is None or not await repo.use_step(session, user_id, step, confirm=True):
        raise InvalidCodeError
    codes = [
        "-".join(
            base64.b32encode(secrets.token_bytes(5)).decode().lower()[i : i + 4] for i in (0, 4)
        )
        for _ in range(RECOVERY_CODES)
    ]
    await repo.replace_recovery_codes(session, user_id, [_recovery_hash(c) for c in codes])
    return codes


async def verify(session: AsyncSession, user_id: UUID, code: str, now: float) -> str | None:
    """``totp`` or ``recovery`` when ``code`` is good (and now used), else None."""
    row = await repo.totp_of(session, user_id)
    if row is None or row["confirmed_at"] is None:
        return None
    step = matching_step(await _secret(row), code, now)
    if step is not None:
        return "totp" if await repo.use_step(session, user_id, step, confirm=False) else None
    if await repo.use_recovery_code(session, user_id, _recovery_hash(code)):
        return "recovery"
    return None


async def disable(session: AsyncSession, user_id: UUID, code: str, now: float) -> str:
    """Off, with a current code or a recovery code as proof; what proved it."""
    if not (await status(session, user_id)).enabled:
        raise MfaNotEnabledError
    used = await verify(session, user_id, code, now)
    if used is None:
        raise InvalidCodeError
    await repo.delete_totp(session, user_id)
    return used


async def reset(session: AsyncSession, user_id: UUID) -> None:
    """Off without proof: an admin's action for a user who lost their factor."""
    await repo.delete_totp(session, user_id)


async def required(session: AsyncSession, realm: str) -> bool:
    return await repo.mfa_required(session, realm)


async def pending(session: AsyncSession, user_id: UUID, email: str, issuer: str) -> Enrolment:
    """The enrolment under way, shown again (after a wrong first code)."""
    row = await repo.totp_of(session, user_id)
    if row is None or row["confirmed_at"] is not None:
        raise MfaNotEnabledError
    secret = base64.b32encode(await _secret(row)).decode().rstrip("=")
    return _enrolment(secret, email, issuer)


def _enrolment(secret: str, email: str, issuer: str) -> Enrolment:
    query = urlencode({"secret": secret, "issuer": issuer, "digits": DIGITS, "period": STEP})
    return Enrolment(secret, f"otpauth://totp/{quote(issuer)}:{quote(email)}?{query}")


def issuer_label(realm: str) -> str:
    return "Plexica " + realm.removeprefix(REALM_PREFIX)


async def open_challenge(session: AsyncSession, realm: str, user_id: UUID, kind: str) -> str:
    """``verify``: a code is awaited; ``enrol``: the realm requires TOTP and the user has none."""
    token = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + CHALLENGE_TTL
    await repo.open_challenge(
        session, _token_hash(token), realm=realm, user_id=user_id, kind=kind, expires_at=expires
    )
    return token


@dataclass(frozen=True)
class Answer:
    user_id: UUID | None  # None: no such live challenge (expired, used, or out of tries)
    kind: str = "verify"
    # "totp" or "recovery" (verified), "confirmed" (enrolled now: show the recovery codes and
    # wait for the user to go on), "enrolled" (they went on); None for a wrong code.
    used: str | None = None
    recovery_codes: tuple[str, ...] = ()


async def answer(session: AsyncSession, realm: str, token: str, code: str, now: float) -> Answer:
    hashed = _token_hash(token)
    found = await repo.challenge(session, hashed, realm)
    if found is None or found["attempts"] >= CHALLENGE_TRIES:
        return Answer(None)
    user_id, kind = found["user_id"], found["kind"]
    if kind == "enrol" and found["passed_at"] is not None:
        await repo.close_challenge(session, hashed)
        return Answer(user_id, kind, "enrolled")
    if kind == "enrol":
        try:
            codes = await confirm(session, user_id, code, now)
        except (InvalidCodeError, MfaNotEnabledError, MfaEnabledError):
            await repo.count_attempt(session, hashed)
            return Answer(user_id, kind)
        await repo.pass_challenge(session, hashed)
        return Answer(user_id, kind, "confirmed", tuple(codes))
    used = await verify(session, user_id, code, now)
    if used is None:
        await repo.count_attempt(session, hashed)
    else:
        await repo.close_challenge(session, hashed)
    return Answer(user_id, kind, used)
