"""Signing in the way a browser does: authorization code + PKCE through the login form.

Used by ``plexica token`` so that a script gets its token from the provider's own flow (works
against the built-in provider and Keycloak alike: both serve a plain HTML form).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx

from plexica.identity.service import CLI_CLIENT, CLI_REDIRECT


class LoginError(Exception):
    """The provider refused the sign-in; the message is the provider's own words."""


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.alert: list[str] = []
        self._in_form = False
        self._in_alert = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = a.get("action", "")
            self._in_form = True
        elif tag == "input" and self._in_form and a.get("name"):
            if a.get("type", "text") == "hidden":
                self.fields[a["name"]] = a.get("value", "")
        elif a.get("role") == "alert" or a.get("id") == "input-error":
            self._in_alert = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        self._in_alert = False

    def handle_data(self, data: str) -> None:
        if self._in_alert and data.strip():
            self.alert.append(data.strip())


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


async def password_login(
    http: httpx.AsyncClient,
    issuer: str,
    email: str,
    password: str,
    *,
    client_id: str = CLI_CLIENT,
    redirect_uri: str = CLI_REDIRECT,
    code: Callable[[], str] | None = None,
) -> dict[str, Any]:
    """The token response of signing in as ``email`` at ``issuer``; ``code`` gives the second
    step's code when the account uses two-step sign-in (ADR 0232)."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    endpoint = issuer.rstrip("/") + "/protocol/openid-connect"
    query = urlencode(
        {
            "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
            "scope": "openid email", "state": state, "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )  # fmt: skip
    page = await http.get(f"{endpoint}/auth?{query}", follow_redirects=True)
    form = _FormParser()
    form.feed(page.text)
    if page.status_code != 200 or form.action is None:
        raise LoginError(" ".join(form.alert) or f"no login form (HTTP {page.status_code})")
    fields = {**form.fields, "username": email, "password": password}
    target = httpx.URL(urljoin(str(page.url), form.action))
    answer = await http.post(target, data=fields, headers=_cookie_header(http, target))
    second = _FormParser()
    second.feed(answer.text)
    if answer.status_code == 200 and "challenge" in second.fields:
        if code is None:
            raise LoginError("this account uses two-step sign-in: a code is needed")
        fields = {**second.fields, "code": code()}
        target = httpx.URL(urljoin(str(page.url), second.action or ""))
        answer = await http.post(target, data=fields, headers=_cookie_header(http, target))
    location = answer.headers.get("location", "")
    if answer.status_code not in (302, 303) or not location.startswith(redirect_uri):
        failed = _FormParser()
        failed.feed(answer.text)
        raise LoginError(" ".join(failed.alert) or f"sign-in failed (HTTP {answer.status_code})")
    back = parse_qs(urlsplit(location).query)
    if back.get("state") != [state] or "code" not in back:
        raise LoginError(back.get("error_description", ["sign-in was refused"])[0])
    token = await http.post(
        f"{endpoint}/token",
        data={
            "grant_type": "authorization_code", "code": back["code"][0],
            "redirect_uri": redirect_uri, "client_id": client_id, "code_verifier": verifier,
        },
    )  # fmt: skip
    body: dict[str, Any] = token.json()
    if token.status_code != 200:
        raise LoginError(str(body.get("error_description", body.get("error", "token refused"))))
    return body


def _cookie_header(http: httpx.AsyncClient, url: httpx.URL) -> dict[str, str]:
    """Keycloak marks its sign-in cookies Secure, which browsers still send to an http loopback
    address in development and httpx does not: to such an address they are sent by hand, with
    the others that match it."""
    jar = list(http.cookies.jar)
    loopback = url.host == "localhost" or url.host.startswith("127.") or url.host == "::1"
    if url.scheme != "http" or not loopback or not any(c.secure for c in jar):
        return {}
    host, path = url.host, url.path
    matching = [
        c
        for c in jar
        if host in (c.domain, c.domain.lstrip(".")) and path.startswith(c.path or "/")
    ]
    return {"Cookie": "; ".join(f"{c.name}={c.value}" for c in matching)}
