"""The built-in OIDC provider's token grants: authorization codes with PKCE, their exchange,
refresh-token rotation, client credentials, and the check of its own access tokens.

Codes and refresh tokens are random and stored only as their SHA-256 hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import jwt
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.identity import key_repository, policy, repository, revocation, signing
from plexica.identity.custody import KeyCustodyError
from plexica.identity.keys import public_key_from_jwk
from plexica.identity.names import issuer_url
from plexica.identity.schemas import TokenResponse
from plexica.identity.service import ACCESS_TTL, AUDIENCE, OAuthError, now_utc, sha256

REFRESH_TTL = 8 * 3600
CODE_TTL = 60


async def _signer(session: AsyncSession, realm: str) -> Callable[[dict[str, Any]], str]:
    """Signs claims with the realm's current key, named by its kid in the header."""
    try:
        kid, key = await signing.signer(session, realm)
    except (signing.NoSigningKeyError, KeyCustodyError):
        raise OAuthError("server_error", "the realm cannot sign tokens", status=500) from None
    return lambda claims: jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def _pkce_ok(verifier: str, challenge: str) -> bool:
    if not 43 <= len(verifier) <= 128:
        return False
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return hmac.compare_digest(computed, challenge)


async def create_code(
    session: AsyncSession,
    realm: str,
    *,
    client_id: str,
    user_id: UUID,
    redirect_uri: str,
    code_challenge: str,
    scope: str,
    nonce: str | None,
) -> str:
    code = secrets.token_urlsafe(32)
    await repository.insert_code(
        session,
        code_hash=sha256(code),
        realm=realm,
        client_id=client_id,
        user_id=user_id,
        redirect_uri=redirect_uri,
        code_challenge=code_challenge,
        scope=scope,
        nonce=nonce,
        auth_time=now_utc(),
        expires_at=now_utc() + timedelta(seconds=CODE_TTL),
    )
    return code


def code_family(realm: str, code_hash: str) -> UUID:
    """The refresh-token chain a code starts, derived from the code: a replayed code finds its
    chain even after the code itself is gone (spent, expired or purged)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"plexica:{realm}:code:{code_hash}")


async def exchange_code(
    session: AsyncSession,
    realm: dict[str, Any],
    client: dict[str, Any],
    *,
    code: str,
    redirect_uri: str | None,
    verifier: str | None,
    base_url: str,
    now: datetime | None = None,
) -> TokenResponse:
    now = now or now_utc()
    code_hash = sha256(code)
    family = code_family(realm["name"], code_hash)
    grant = await repository.take_code(session, realm["name"], code_hash)
    # Spent (or never issued): whoever replays it may have stolen it, so the tokens it bought
    # are revoked (RFC 6749 §4.1.2, OAuth 2.0 Security BCP §4.5): the refresh chain, and the
    # access tokens of its session (``sid``). A code never issued names a chain that does not
    # exist, and records nothing.
    if grant is None and await repository.revoke_family(session, family):
        await revocation.end_session(session, realm["name"], str(family))
    if (
        grant is None
        or grant["expires_at"] < now
        or grant["client_id"] != client["client_id"]
        or grant["redirect_uri"] != redirect_uri
        or verifier is None
        or not _pkce_ok(verifier, grant["code_challenge"])
    ):
        raise OAuthError("invalid_grant", "the authorization code is invalid or expired")
    user = await repository.user_by_id(session, realm["name"], grant["user_id"])
    if user is None or not user["enabled"]:
        raise OAuthError("invalid_grant", "the authorization code is invalid or expired")
    auth_time = grant["auth_time"] or grant["expires_at"] - timedelta(seconds=CODE_TTL)
    # The session's end is fixed now, by the policy of today: a later change applies to the
    # sessions that start after it (ADR 0243).
    found = await policy.of(session, realm["name"])
    return await _user_tokens(
        session, realm, client, user, scope=grant["scope"], nonce=grant["nonce"], family=family,
        auth_time=auth_time, base_url=base_url, now=now,
        session_end=auth_time + timedelta(hours=found.session_max_hours),
    )  # fmt: skip


async def refresh(
    session: AsyncSession,
    realm: dict[str, Any],
    client: dict[str, Any],
    token: str,
    base_url: str,
    *,
    now: datetime | None = None,
) -> TokenResponse:
    now = now or now_utc()
    grant, fresh = await repository.use_refresh(session, realm["name"], sha256(token), now)
    if grant is not None and not fresh:
        # A rotated token presented again: someone holds a copy, so end the whole chain, and
        # the access tokens of its session with it.
        await repository.revoke_family(session, grant["family"])
        await revocation.end_session(session, realm["name"], str(grant["family"]))
    if (
        grant is None
        or not fresh
        or grant["expires_at"] < now
        or (grant["session_expires_at"] is not None and grant["session_expires_at"] <= now)
        or grant["client_id"] != client["client_id"]
    ):
        raise OAuthError("invalid_grant", "the refresh token is invalid or expired")
    user = await repository.user_by_id(session, realm["name"], grant["user_id"])
    if user is None or not user["enabled"]:
        raise OAuthError("invalid_grant", "the refresh token is invalid or expired")
    return await _user_tokens(
        session, realm, client, user, scope=grant["scope"], nonce=None,
        family=grant["family"], auth_time=grant["auth_time"], base_url=base_url, now=now,
        session_end=grant["session_expires_at"],
    )  # fmt: skip


async def _user_tokens(
    session: AsyncSession,
    realm: dict[str, Any],
    client: dict[str, Any],
    user: dict[str, Any],
    *,
    scope: str,
    nonce: str | None,
    family: UUID,
    auth_time: datetime | None,
    base_url: str,
    now: datetime,
    session_end: datetime | None,
) -> TokenResponse:
    """``auth_time``: when the user signed in (the code's login); every ID token of the chain
    carries it (OIDC Core §12.2). None only for chains older than its column. The refresh
    token lasts the realm's idle time, and never past ``session_end`` (None: a chain older than
    session lifetimes, which keeps the refresh lifetime it had)."""
    sign = await _signer(session, realm["name"])
    iss = issuer_url(base_url, realm["name"])
    at = now
    idle = timedelta(minutes=(await policy.of(session, realm["name"])).session_idle_minutes)
    refresh_until = at + (idle if session_end is not None else timedelta(seconds=REFRESH_TTL))
    if session_end is not None:
        refresh_until = min(refresh_until, session_end)
    epoch = int(at.timestamp())
    signed_in = int(auth_time.timestamp()) if auth_time is not None else epoch
    exp = epoch + ACCESS_TTL
    claims = _access_claims(realm, client, user, iss=iss, now=epoch, exp=exp, sid=family)
    claims["scope"] = scope
    access = sign(claims)
    refresh_token = secrets.token_urlsafe(32)
    await repository.insert_refresh(
        session,
        token_hash=sha256(refresh_token),
        realm=realm["name"],
        client_id=client["client_id"],
        user_id=user["id"],
        family=family,
        scope=scope,
        auth_time=auth_time,
        expires_at=refresh_until,
        session_expires_at=session_end,
    )
    id_token = None
    if "openid" in scope.split():
        id_claims = _id_claims(client, user, iss=iss, now=epoch, exp=exp, sid=family)
        id_claims["auth_time"] = signed_in
        if nonce:
            id_claims["nonce"] = nonce
        id_token = sign(id_claims)
    return TokenResponse(
        access_token=access,
        expires_in=ACCESS_TTL,
        refresh_token=refresh_token,
        refresh_expires_in=max(0, int((refresh_until - at).total_seconds())),
        id_token=id_token,
        scope=scope,
    )


def _access_claims(
    realm: dict[str, Any], client: dict[str, Any], user: dict[str, Any], *,
    iss: str, now: int, exp: int, sid: UUID,
) -> dict[str, Any]:  # fmt: skip
    claims: dict[str, Any] = {
        "iss": iss,
        "sub": str(user["id"]),
        "aud": AUDIENCE,
        "azp": client["client_id"],
        "iat": now,
        "exp": exp,
        "jti": str(uuid.uuid4()),
        "typ": "Bearer",
        "sid": str(sid),  # the sign-in session: signing out refuses its tokens (ADR 0115)
        "email": user["email"],
        "preferred_username": user["email"],
        "realm_access": {"roles": list(user["roles"])},
    }
    if realm["tenant_id"] is not None:
        claims["tenant_id"] = str(realm["tenant_id"])
    return claims


def _id_claims(
    client: dict[str, Any], user: dict[str, Any], *, iss: str, now: int, exp: int, sid: UUID
) -> dict[str, Any]:
    return {
        "iss": iss,
        "sub": str(user["id"]),
        "aud": client["client_id"],
        "azp": client["client_id"],
        "iat": now,
        "exp": exp,
        "sid": str(sid),
        "email": user["email"],
        "email_verified": True,
    }


async def support_tokens(
    session: AsyncSession,
    realm: dict[str, Any],
    client: dict[str, Any],
    user: dict[str, Any],
    *,
    sid: UUID,
    act: dict[str, str],
    expires_at: datetime,
    base_url: str,
) -> tuple[str, str, int]:
    """An access token and an ID token of ``user`` for the operator ``act`` names (RFC 8693's
    actor claim), good until ``expires_at`` and never renewed: no refresh token (ADR 0240).
    Returns both tokens and their lifetime in seconds."""
    sign = await _signer(session, realm["name"])
    iss = issuer_url(base_url, realm["name"])
    now = int(time.time())
    exp = max(now, int(expires_at.timestamp()))
    claims = _access_claims(realm, client, user, iss=iss, now=now, exp=exp, sid=sid)
    claims["scope"] = "openid email"
    claims["act"] = act
    id_claims = _id_claims(client, user, iss=iss, now=now, exp=exp, sid=sid)
    id_claims["auth_time"] = now
    id_claims["act"] = act
    return sign(claims), sign(id_claims), exp - now


def service_subject(realm: str, client_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"plexica:{realm}:service:{client_id}"))


async def client_credentials(
    session: AsyncSession, realm: dict[str, Any], client: dict[str, Any], scope: str, base_url: str
) -> TokenResponse:
    if client["public"]:
        raise OAuthError("unauthorized_client", "a public client cannot use client_credentials")
    sign = await _signer(session, realm["name"])
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer_url(base_url, realm["name"]),
        "sub": service_subject(realm["name"], client["client_id"]),
        "aud": AUDIENCE,
        "azp": client["client_id"],
        "iat": now,
        "exp": now + ACCESS_TTL,
        "jti": str(uuid.uuid4()),
        "typ": "Bearer",
        "scope": scope,
        "service": True,
        "realm_access": {"roles": list(client["roles"])},
    }
    if realm["tenant_id"] is not None:
        claims["tenant_id"] = str(realm["tenant_id"])
    access = sign(claims)
    return TokenResponse(access_token=access, expires_in=ACCESS_TTL, scope=scope)


async def local_claims(
    session: AsyncSession, realm: str, token: str, base_url: str
) -> dict[str, Any]:
    """Verify an access token of this realm against its own keys (userinfo, logout hints)."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        kid = None
    for key in signing.published(await key_repository.of_realm(session, realm), now_utc()):
        if key.kid == kid:
            public = public_key_from_jwk(key.public_jwk)
            if public is None:
                break
            try:
                return dict(
                    jwt.decode(
                        token,
                        public,
                        algorithms=["RS256"],
                        audience=AUDIENCE,
                        issuer=issuer_url(base_url, realm),
                        leeway=30,
                    )
                )
            except jwt.PyJWTError:
                break
    raise OAuthError("invalid_token", "the access token is invalid", status=401)
