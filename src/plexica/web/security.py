"""Browser hardening of every shell answer (ADR 0121, 0122).

- A state-changing request (anything but GET, HEAD, OPTIONS) must come from one of the shell's
  own origins: ``Sec-Fetch-Site``, when sent, must be ``same-origin``; ``Origin``, when sent (else
  ``Referer``), must be the shell's. A request with none of the three is not from a browser
  (browsers send ``Origin`` on every POST), so it has no victim's cookies to abuse and passes on
  to the CSRF token check. Refused requests get 403 before any route runs.
- Every answer carries a Content-Security-Policy without inline script (one nonce per answer for
  the branding ``<style>``), ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``,
  ``X-Content-Type-Options: nosniff`` and a ``Referrer-Policy``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REFERRER_POLICY = "same-origin"


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL, lower-cased, without a default port; None if none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def cross_site_reason(headers: Headers, own: Callable[[], set[str]]) -> str | None:
    """Why a state-changing request is not from the shell's own pages, or None if it is."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site != "same-origin":
        return f"Sec-Fetch-Site is {fetch_site!r}"
    origin = headers.get("origin")
    if origin is not None:
        # "null" (sandboxed frames, some redirects) is no origin of ours either.
        return None if origin_of(origin) in own() else f"Origin {origin!r} is not this site"
    referer = headers.get("referer")
    if referer is not None:
        return None if origin_of(referer) in own() else "the Referer is not this site"
    return None


def content_security_policy(nonce: str, form_targets: str) -> str:
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            f"style-src 'self' 'nonce-{nonce}'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            # Plugin pages set <base href> to the plugin's own pages; never another site.
            "base-uri 'self'",
            # Sign-in and sign-out forms end at the identity provider (a redirect that the
            # browser checks against form-action too).
            f"form-action 'self' {form_targets}".rstrip(),
            "frame-ancestors 'none'",
        )
    )


class ShellSecurity:
    """Pure ASGI: the origin check of state-changing requests and the security headers."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        own_origins: Callable[[Request], set[str]],
        refuse: Callable[[Request, str], Response],
        form_targets: str,
    ) -> None:
        self.app = app
        self.own_origins = own_origins
        self.refuse = refuse
        self.form_targets = form_targets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        policy = content_security_policy(nonce, self.form_targets)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                # A route that sets a stricter policy of its own (the logo) keeps it.
                if "content-security-policy" not in headers:
                    headers["Content-Security-Policy"] = policy
                headers["X-Frame-Options"] = "DENY"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = REFERRER_POLICY
            await send(message)

        if scope["method"] not in SAFE_METHODS:
            request = Request(scope)
            reason = cross_site_reason(request.headers, lambda: self.own_origins(request))
            if reason is not None:
                await self.refuse(request, reason)(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)
