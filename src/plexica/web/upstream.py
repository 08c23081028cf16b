"""The shell's calls to the platform: OIDC token endpoint, core API and plugin fragments, all
through the public URL so that the same code works in ``plexica up`` and behind a gateway."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from plexica.identity.service import WEB_CLIENT
from plexica.web.session import WebSession

CORE = "/api/core"
REFRESH_MARGIN = 15.0


class SessionExpiredError(Exception):
    """The tokens are gone or refused: the user signs in again."""


@dataclass(frozen=True)
class ApiResult:
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def failure_status(self) -> int:
        """The status that reports this call's failure: its own error status, or 502 (bad
        gateway) when the API answered without one but not as expected."""
        return self.status if self.status >= 400 else 502

    def list_body(self) -> list[Any]:
        """The answer of a call that succeeded with a list, else an empty one."""
        return self.body if self.ok and isinstance(self.body, list) else []

    def dict_body(self) -> dict[str, Any] | None:
        """The answer of a call that succeeded with an object, else None."""
        return self.body if self.ok and isinstance(self.body, dict) else None

    def error_code(self) -> str | None:
        err = self.body.get("error") if isinstance(self.body, dict) else None
        return str(err["code"]) if isinstance(err, dict) and err.get("code") else None

    def error_message(self) -> str:
        if isinstance(self.body, dict):
            err = self.body.get("error")
            if isinstance(err, dict):
                return str(err.get("message") or err.get("code") or "request failed")
            return str(self.body.get("detail") or self.body.get("message") or "request failed")
        return f"request failed (HTTP {self.status})"

    def form_errors(self, field_of_code: Mapping[str, str]) -> dict[str, str]:
        """``field_errors``, or else the message under the form field that the error's code
        belongs to (``field_of_code``)."""
        errors = self.field_errors()
        field = field_of_code.get(self.error_code() or "")
        if field is not None and not errors:
            errors[field] = self.error_message()
        return errors

    def field_errors(self) -> dict[str, str]:
        """The server's messages per form field (422 details name the field last)."""
        out: dict[str, str] = {}
        if not isinstance(self.body, dict):
            return out
        err = self.body.get("error")
        details = err.get("details") if isinstance(err, dict) else self.body.get("detail")
        if isinstance(details, dict):
            details = details.get("errors", details.get("fields"))
        if isinstance(details, list):
            for d in details:
                if isinstance(d, dict) and d.get("loc"):
                    out.setdefault(str(d["loc"][-1]), str(d.get("msg", "invalid")))
                elif isinstance(d, dict) and d.get("path"):
                    out.setdefault(str(d["path"]), str(d.get("message", "invalid")))
        return out


class Upstream:
    """``issuer_url``: where the browser meets the identity provider (the built-in one under the
    public URL, or Keycloak's public address); ``idp_url``: where the shell itself calls its
    token and logout endpoints, None for through the public URL as the API calls go."""

    def __init__(
        self,
        base_url: str,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        issuer_url: str | None = None,
        idp_url: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.issuer_url = (issuer_url or base_url).rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, transport=transport, timeout=10.0)
        self._idp = (
            httpx.AsyncClient(base_url=idp_url.rstrip("/"), timeout=10.0) if idp_url else None
        )

    @property
    def http(self) -> httpx.AsyncClient:
        return self._http

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._idp is not None:
            await self._idp.aclose()

    def endpoint(self, realm: str) -> str:
        """The realm's OIDC endpoints as the browser reaches them."""
        return f"{self.issuer_url}/realms/{realm}/protocol/openid-connect"

    async def _idp_post(self, realm: str, name: str, form: dict[str, str]) -> httpx.Response:
        path = f"/realms/{realm}/protocol/openid-connect/{name}"
        if self._idp is not None:
            return await self._idp.post(path, data=form)
        return await self._http.post(path, data=form)

    def redirect_uri(self) -> str:
        return f"{self.base_url}/auth/callback"

    def authorize_url(
        self, realm: str, state: str, challenge: str, redirect_uri: str | None = None
    ) -> str:
        query = urlencode(
            {
                "response_type": "code", "client_id": WEB_CLIENT,
                "redirect_uri": redirect_uri or self.redirect_uri(), "scope": "openid email",
                "state": state,
                "code_challenge": challenge, "code_challenge_method": "S256",
            }
        )  # fmt: skip
        return f"{self.endpoint(realm)}/auth?{query}"

    async def exchange(
        self, realm: str, code: str, verifier: str, redirect_uri: str | None = None
    ) -> WebSession:
        return await self._token(
            realm,
            {
                "grant_type": "authorization_code", "code": code, "client_id": WEB_CLIENT,
                "redirect_uri": redirect_uri or self.redirect_uri(), "code_verifier": verifier,
            },
        )  # fmt: skip

    async def refresh(self, session: WebSession) -> WebSession:
        if not session.refresh_token:
            raise SessionExpiredError
        fresh = await self._token(
            session.realm,
            {
                "grant_type": "refresh_token", "refresh_token": session.refresh_token,
                "client_id": WEB_CLIENT,
            },
        )  # fmt: skip
        fresh.csrf = session.csrf
        fresh.id = session.id
        fresh.id_token = fresh.id_token or session.id_token
        return fresh

    def end_session_url(
        self, session: WebSession, state: str, post_logout_redirect_uri: str | None = None
    ) -> str:
        """The provider's end-session endpoint (OIDC RP-initiated logout), where the browser
        goes after the shell has ended its own session: the provider ends its sign-in session
        too, then sends the browser back to the shell's registered callback with ``state``."""
        params = {
            "client_id": WEB_CLIENT,
            "post_logout_redirect_uri": post_logout_redirect_uri or self.redirect_uri(),
            "state": state,
        }
        if session.id_token:
            params["id_token_hint"] = session.id_token
        return f"{self.endpoint(session.realm)}/logout?{urlencode(params)}"

    async def end_session(self, session: WebSession) -> None:
        """Revokes the refresh token at the provider (back channel): a stolen copy of the old
        cookie cannot mint new access tokens after sign-out."""
        if not session.refresh_token:
            return
        form = {"refresh_token": session.refresh_token, "client_id": WEB_CLIENT}
        # On failure the cookie is dropped anyway and the token expires on its own.
        with contextlib.suppress(httpx.HTTPError):
            await self._idp_post(session.realm, "logout", form)

    async def _token(self, realm: str, form: dict[str, str]) -> WebSession:
        answer = await self._idp_post(realm, "token", form)
        if answer.status_code != 200:
            raise SessionExpiredError
        body = answer.json()
        now = time.time()
        refresh_for = float(body.get("refresh_expires_in") or 0)
        return WebSession(
            realm=realm,
            access_token=str(body["access_token"]),
            refresh_token=body.get("refresh_token"),
            id_token=body.get("id_token"),
            expires_at=now + float(body.get("expires_in", 300)),
            ends_at=now + refresh_for if refresh_for > 0 else None,
        )

    async def call(
        self, session: WebSession, method: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        headers = {**kwargs.pop("headers", {}), "Authorization": f"Bearer {session.access_token}"}
        return await self._http.request(method, path, headers=headers, **kwargs)

    async def api(self, session: WebSession, method: str, path: str, **kwargs: Any) -> ApiResult:
        answer = await self.call(session, method, CORE + path, **kwargs)
        if answer.status_code == 401:
            raise SessionExpiredError
        try:
            body: Any = answer.json() if answer.content else None
        except ValueError:
            body = answer.text
        return ApiResult(answer.status_code, body)

    async def ready(self, session: WebSession) -> ApiResult:
        # With the operator's token: the edge tells readiness details to signed-in callers only.
        answer = await self.call(session, "GET", CORE + "/ready")
        try:
            body: Any = answer.json()
        except ValueError:
            body = answer.text
        return ApiResult(answer.status_code, body)
