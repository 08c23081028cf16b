"""Company sign-in (SSO) in the built-in provider (ADR 0246): a tenant connects its company's
OpenID Connect provider; users of its e-mail domains sign in there and come back with an account
(made on their first visit, with the tenant's default role).

The built-in provider is the company provider's relying party: authorization code with PKCE and a
nonce, the client secret sealed at rest with the key ring, the ID token's signature, issuer,
audience, nonce and e-mail domain checked before any account is touched."""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.identity import custody, repository, service
from plexica.identity import sso_repository as repo
from plexica.identity.client import pkce_pair
from plexica.identity.schemas import SsoProvider, SsoProviderIn
from plexica.settings import Settings

LOGIN_SECONDS = 600
BROWSER_COOKIE = "plexica_sso"
_TIMEOUT = 10.0
_MAX_BODY = 1 << 20
# Keys of the company provider's ID tokens: asymmetric only, never "none" nor HMAC.
_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]


class SsoFailure(Exception):  # noqa: N818 - a sign-in's outcome, not a programming error
    """A company sign-in that did not complete: ``message`` for the user, ``reason`` for the
    admin (the audit entry)."""

    def __init__(self, reason: str, message: str, status: int = 502) -> None:
        super().__init__(reason)
        self.reason, self.message, self.status = reason, message, status


_UNREACHABLE = (
    "Your organisation's sign-in service could not complete the sign-in. Try again later or "
    "ask your administrator."
)


@dataclass(frozen=True)
class Provider:
    display_name: str
    issuer: str
    client_id: str
    sealed_secret: str
    sealed_with: str
    domains: tuple[str, ...]
    default_role: str
    required: bool

    def client_secret(self) -> str:
        """Opened only to be sent: a ring that cannot open it fails one company sign-in, not
        every sign-in form (``SsoFailure``)."""
        try:
            return custody.ring().open(self.sealed_secret, self.sealed_with)
        except custody.KeyCustodyError as exc:
            raise SsoFailure(str(exc), _UNREACHABLE) from None

    def routes(self, email: str) -> bool:
        """Whether ``email`` belongs to one of the company's domains."""
        return email.rpartition("@")[2].lower() in self.domains


@dataclass(frozen=True)
class Identity:
    email: str
    subject: str


def local_allowed(settings: Settings) -> bool:
    """In development the company provider may be on this machine or the local network, over
    http; anywhere else only https to public addresses (ADR 0246)."""
    return settings.environment == "development"


def callback_url(base_url: str, realm: str) -> str:
    """Where the company provider sends the browser back: register it there."""
    return f"{service.issuer_url(base_url, realm)}/broker/oidc/endpoint"


async def provider(session: AsyncSession, realm: str) -> Provider | None:
    row = await repo.provider_of(session, realm)
    if row is None:
        return None
    return Provider(
        row["display_name"], row["issuer"], row["client_id"], row["sealed_secret"],
        row["sealed_with"], tuple(row["domains"]), row["default_role"], row["required"],
    )  # fmt: skip


async def display_name(session: AsyncSession, realm: str) -> str | None:
    row = await repo.provider_of(session, realm)
    return str(row["display_name"]) if row else None


async def describe(session: AsyncSession, realm: str, base_url: str) -> SsoProvider | None:
    row = await repo.provider_of(session, realm)
    if row is None:
        return None
    return SsoProvider(
        display_name=row["display_name"], protocol="oidc", issuer=row["issuer"],
        client_id=row["client_id"], metadata_url=None, entity_id=None,
        domains=list(row["domains"]), default_role=row["default_role"], required=row["required"],
        redirect_uri=callback_url(base_url, realm), updated_at=row["updated_at"],
    )  # fmt: skip


async def discover(http: httpx.AsyncClient, issuer: str, *, local: bool) -> dict[str, Any]:
    """The provider's metadata, checked: it names itself ``issuer`` and has the endpoints a
    relying party needs, each of them allowed (``_allowed``). ``SsoFailure`` says what is
    wrong."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    await _allowed(url, local=local)
    answer = await _call(http, "GET", url)
    meta = _json(answer) if answer.status_code == 200 else None
    if not isinstance(meta, dict):
        raise SsoFailure(f"{url} answered HTTP {answer.status_code}", _UNREACHABLE)
    if meta.get("issuer") != issuer:
        raise SsoFailure(f"{url} names another issuer", _UNREACHABLE)
    endpoints = ("authorization_endpoint", "token_endpoint", "jwks_uri")
    missing = [k for k in endpoints if not isinstance(meta.get(k), str)]
    if missing:
        raise SsoFailure(f"{url} has no {', '.join(missing)}", _UNREACHABLE)
    for name in endpoints:
        await _allowed(meta[name], local=local)
    return meta


async def saml_metadata(http: httpx.AsyncClient, url: str, *, local: bool) -> bytes:
    """A SAML provider's metadata document, read as ``discover`` reads a discovery document
    (``_allowed``, one time and size budget); Keycloak parses it (ADR 0248)."""
    await _allowed(url, local=local)
    answer = await _call(http, "GET", url)
    if answer.status_code != 200 or b"EntityDescriptor" not in answer.content:
        reason = f"{url} answered no SAML metadata (HTTP {answer.status_code})"
        raise SsoFailure(reason, _UNREACHABLE)
    return answer.content


async def _allowed(url: str, *, local: bool) -> None:
    """Outside development (``local``), only https to public addresses: a tenant admin must
    not make the platform call its own network (SSRF)."""
    try:
        parts = httpx.URL(url)
    except httpx.InvalidURL:
        raise SsoFailure(f"{url!r} is not a URL", _UNREACHABLE) from None
    if local:
        return
    if parts.scheme != "https" or not parts.host:
        raise SsoFailure(f"{url} is not an https address", _UNREACHABLE)
    try:
        found = await asyncio.get_running_loop().getaddrinfo(parts.host, parts.port or 443)
    except OSError:
        raise SsoFailure(f"{parts.host} does not resolve", _UNREACHABLE) from None
    if any(not ipaddress.ip_address(info[4][0]).is_global for info in found):
        raise SsoFailure(f"{parts.host} is not a public address", _UNREACHABLE)


async def _call(http: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One call to the company's provider within ``_TIMEOUT`` in all, its body at most
    ``_MAX_BODY`` bytes."""
    try:
        async with asyncio.timeout(_TIMEOUT), http.stream(method, url, **kwargs) as answer:
            body = b""
            async for chunk in answer.aiter_bytes():
                body += chunk
                if len(body) > _MAX_BODY:
                    raise SsoFailure(f"{url} answered with too much", _UNREACHABLE)
        return httpx.Response(answer.status_code, headers=answer.headers, content=body)
    except (httpx.HTTPError, httpx.InvalidURL, TimeoutError) as exc:
        raise SsoFailure(f"{url} cannot be reached ({type(exc).__name__})", _UNREACHABLE) from None


def _json(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return None


async def configure(
    session: AsyncSession, http: httpx.AsyncClient, realm: str, new: SsoProviderIn, *, local: bool
) -> None:
    """Connects (or changes) the realm's provider once its metadata checks out; a secret left
    out keeps the one stored, for the same issuer and client only (never sent elsewhere)."""
    assert new.issuer is not None  # OpenID Connect's fields (the schema's)
    assert new.client_id is not None
    await discover(http, new.issuer, local=local)
    secret = new.client_secret.get_secret_value() if new.client_secret else None
    if secret is None:
        current = await provider(session, realm)
        if current is None or (current.issuer, current.client_id) != (new.issuer, new.client_id):
            raise SsoFailure("no client secret", "Enter the client secret.", status=422)
        try:
            secret = current.client_secret()
        except SsoFailure:
            raise SsoFailure(
                "the stored secret cannot be opened", "Enter the client secret.", 422
            ) from None
    sealed = custody.ring().seal(secret)
    values = new.model_dump(
        include={"display_name", "issuer", "client_id", "default_role", "required"}
    )
    values["domains"] = sorted({d.lower() for d in new.domains})
    await repo.put_provider(
        session, realm, {**values, "sealed_secret": sealed.token, "sealed_with": sealed.key_id}
    )


async def disconnect(session: AsyncSession, realm: str) -> bool:
    return await repo.delete_provider(session, realm)


@dataclass(frozen=True)
class Started:
    """Where to send the browser, and the cookie that binds the answer to this browser."""

    url: str
    browser: str


async def start(
    session: AsyncSession, http: httpx.AsyncClient, realm: str, found: Provider,
    params: dict[str, str], *, base_url: str, login_hint: str = "", local: bool,
) -> Started:  # fmt: skip
    """The company provider's authorization request, for a sign-in that comes back to
    ``callback_url`` and then goes on with ``params``."""
    meta = await discover(http, found.issuer, local=local)
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    browser = secrets.token_urlsafe(24)
    verifier, challenge = pkce_pair()
    await repo.open_login(
        session, service.sha256(state), realm, params=params, nonce=nonce, verifier=verifier,
        browser_hash=service.sha256(browser), seconds=LOGIN_SECONDS,
    )  # fmt: skip
    query = {
        "response_type": "code", "client_id": found.client_id, "scope": "openid email",
        "redirect_uri": callback_url(base_url, realm), "state": state, "nonce": nonce,
        "code_challenge": challenge, "code_challenge_method": "S256",
    }  # fmt: skip
    if login_hint:
        query["login_hint"] = login_hint
    endpoint = str(meta["authorization_endpoint"])
    return Started(endpoint + ("&" if "?" in endpoint else "?") + urlencode(query), browser)


async def pending(session: AsyncSession, realm: str, state: str, browser: str) -> dict[str, Any]:
    """The sign-in that ``state`` belongs to, once, in the browser that started it."""
    found = await repo.take_login(session, service.sha256(state), realm, service.sha256(browser))
    if found is None:
        raise SsoFailure(
            "an unknown, used or expired state came back",
            "Your sign-in expired. Please sign in again.", status=400,
        )  # fmt: skip
    return found


async def finish(
    http: httpx.AsyncClient, found: Provider, login: dict[str, Any], code: str, *, base_url: str,
    realm: str, local: bool,
) -> Identity:  # fmt: skip
    """The company's answer turned into a checked identity."""
    meta = await discover(http, found.issuer, local=local)
    answer = await _call(
        http, "POST", str(meta["token_endpoint"]),
        data={
            "grant_type": "authorization_code", "code": code,
            "redirect_uri": callback_url(base_url, realm), "code_verifier": login["verifier"],
            "client_id": found.client_id, "client_secret": found.client_secret(),
        },
    )  # fmt: skip
    body = _json(answer)
    if answer.status_code != 200 or not isinstance(body, dict) or "id_token" not in body:
        error = body.get("error") if isinstance(body, dict) else None
        raise SsoFailure(
            f"the token endpoint refused the code: HTTP {answer.status_code} {error or ''}".strip(),
            _UNREACHABLE,
        )
    claims = await _verified(http, meta, found, str(body["id_token"]))
    subject = claims.get("sub")
    if claims.get("nonce") != login["nonce"]:
        raise SsoFailure("the ID token's nonce is not this sign-in's", _UNREACHABLE)
    email = str(claims.get("email") or "").strip().lower()
    # Only an address the company vouches for: a provider that lets people type their own
    # would otherwise hand out any account of the domains.
    if not email or claims.get("email_verified") is not True or not isinstance(subject, str):
        raise SsoFailure(
            "the ID token has no verified e-mail address",
            "Your organisation's sign-in did not give a verified e-mail address.", status=403,
        )  # fmt: skip
    if not found.routes(email):
        raise SsoFailure(
            f"{email} is not in the connected domains",
            "This account's e-mail address is not one of your organisation's domains.",
            status=403,
        )
    return Identity(email, subject)


async def _verified(
    http: httpx.AsyncClient, meta: dict[str, Any], found: Provider, id_token: str
) -> dict[str, Any]:
    jwks = _json(await _call(http, "GET", str(meta["jwks_uri"])))
    try:
        kid = jwt.get_unverified_header(id_token).get("kid")
        keys = jwt.PyJWKSet.from_dict(jwks if isinstance(jwks, dict) else {}).keys
    except jwt.PyJWTError as exc:
        raise SsoFailure(f"the ID token or the keys are malformed ({exc})", _UNREACHABLE) from None
    signing = [k for k in keys if k.public_key_use in (None, "sig") and kid in (None, k.key_id)]
    for key in signing:
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token, key, algorithms=_ALGORITHMS, audience=found.client_id,
                issuer=found.issuer, leeway=30, options={"require": ["exp", "iat", "sub"]},
            )  # fmt: skip
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as exc:
            raise SsoFailure(f"the ID token did not verify ({exc})", _UNREACHABLE) from None
        return claims
    raise SsoFailure(f"no key of the provider verifies the ID token (kid {kid})", _UNREACHABLE)


async def account(
    session: AsyncSession, realm: str, found: Provider, identity: Identity
) -> tuple[dict[str, Any], bool]:
    """The user the company vouched for, made with the default role on a first sign-in; and
    whether it was made now."""
    linked = await repo.linked_user(session, realm, found.issuer, identity.subject)
    if linked is not None:
        row = await repository.user_by_id(session, realm, linked["user_id"])
        assert row is not None
        return _enabled(row, identity), False
    row = await repository.user_by_email(session, realm, identity.email)
    made = row is None
    if row is None:
        user = await service.create_user(session, realm, identity.email, None, [found.default_role])
        row = await repository.user_by_id(session, realm, user.id)
        assert row is not None
    elif (current := await repo.link_of(session, row["id"])) is not None:
        # Linked to another account of the company (or of an earlier provider): never swapped.
        raise SsoFailure(
            f"{identity.email} is linked to {current['issuer']} subject {current['subject']}",
            "This e-mail address belongs to another account. Ask your administrator.",
            status=409,
        )
    await repo.link(session, row["id"], realm, found.issuer, identity.subject)
    return _enabled(row, identity), made


def _enabled(row: dict[str, Any], identity: Identity) -> dict[str, Any]:
    if not row["enabled"]:
        raise SsoFailure(
            f"{identity.email} is disabled here",
            "Your account is disabled. Ask your administrator.", status=403,
        )  # fmt: skip
    return row


@dataclass(frozen=True)
class Answer:
    """A company sign-in that completed: the request to go on with and the user."""

    params: dict[str, str]
    issuer: str
    user: dict[str, Any]
    made: bool


async def answer(
    session: AsyncSession, http: httpx.AsyncClient, realm: str, *, state: str, browser: str,
    code: str, error: str, base_url: str, local: bool,
) -> Answer:  # fmt: skip
    """The provider's answer at the callback, checked end to end; ``SsoFailure`` otherwise,
    with the sign-in's state spent either way."""
    login = await pending(session, realm, state, browser)
    found = await provider(session, realm)
    if found is None:
        raise SsoFailure(
            "no company provider is connected any more",
            "Company sign-in is not set up for this organisation.", status=404,
        )  # fmt: skip
    if error or not code:
        raise SsoFailure(
            f"the provider answered {error or 'without a code'}",
            "The sign-in at your organisation was cancelled or refused. Please try again.",
            status=400,
        )
    identity = await finish(http, found, login, code, base_url=base_url, realm=realm, local=local)
    user, made = await account(session, realm, found, identity)
    return Answer(dict(login["params"]), found.issuer, user, made)
