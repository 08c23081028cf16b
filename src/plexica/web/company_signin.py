"""The Company sign-in page of a tenant admin (ADR 0246): connect, change or disconnect the
company's OpenID Connect provider, or with Keycloak its SAML provider (ADR 0248; ``/v1/sso``)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from plexica.web.session import WebSession
from plexica.web.shell import (
    FRESH,
    PageState,
    Shell,
    notice_redirect,
    redirect_or_page,
    tenant_nav,
)

FIELDS = ("display_name", "protocol", "issuer", "client_id", "metadata_url", "domains",
          "default_role")  # fmt: skip
EMPTY = {"display_name": "", "protocol": "oidc", "issuer": "", "client_id": "", "metadata_url": "",
         "domains": "", "default_role": "member", "required": False}  # fmt: skip
# The fields each protocol sends (the API refuses the others').
_OF = {"oidc": ("issuer", "client_id"), "saml": ("metadata_url",)}


def company_signin_routes(app: FastAPI, shell: Shell) -> None:
    async def sso_page(request: Request, session: WebSession, state: PageState = FRESH) -> Response:
        nav, _ = await tenant_nav(shell, session)
        found = await shell.upstream.api(session, "GET", "/v1/sso")
        current = found.dict_body()
        form = dict(EMPTY)
        if current is not None:
            form |= {k: current[k] or "" for k in (*FIELDS, "required")}
            form["domains"] = ", ".join(current["domains"])
            if current["protocol"] == "saml":
                form["issuer"] = ""  # the provider's entity ID, not an OpenID Connect issuer
        # Keycloak's path, where the built-in provider answers too; with Keycloak the alias of
        # the realm's identity provider (ADR 0247).
        alias = "company" if shell.settings.keycloak_url is not None else "oidc"
        redirect_uri = (
            f"{shell.settings.issuer_base_url}/realms/{session.realm}/broker/{alias}/endpoint"
        )
        # Not found: no provider is connected yet.
        loaded = None if found.status == 404 else found
        return shell.form_page(
            request, session, "sso.html", state, loaded, title="Company sign-in", nav=nav,
            form=form | (state.form or {}), connected=current is not None,
            redirect_uri=redirect_uri, saml=shell.settings.keycloak_url is not None,
            entity_id=f"{shell.settings.issuer_base_url}/realms/{session.realm}",
        )  # fmt: skip

    shell.page_route(app, "/t/admin/sso", sso_page, operator=False)

    @app.post("/t/admin/sso", include_in_schema=False)
    async def admin_sso(request: Request) -> Response:
        async def save(request: Request, session: WebSession) -> Response:
            raw = await request.form()
            sent: dict[str, Any] = {k: str(raw.get(k, "")).strip()[:500] for k in FIELDS}
            sent["required"] = raw.get("required") == "on"
            protocol = sent["protocol"] if sent["protocol"] in _OF else "oidc"
            left_out = {k for p, fields in _OF.items() if p != protocol for k in fields}
            body: dict[str, Any] = {
                **{k: v for k, v in sent.items() if k not in left_out},
                "protocol": protocol,
                "domains": [d.strip() for d in sent["domains"].split(",") if d.strip()],
            }
            secret = str(raw.get("client_secret", ""))[:1024]
            if secret and protocol == "oidc":
                body["client_secret"] = secret
            done = await shell.upstream.api(session, "PUT", "/v1/sso", json=body)
            if done.ok:
                return notice_redirect("/t/admin/sso", "Company sign-in saved.")
            errors = {k: v for k, v in done.field_errors().items() if k in body}
            return await sso_page(request, session, PageState.refused(done, errors, sent))

        return await shell.run(request, save, operator=False)

    @app.post("/t/admin/sso/remove", include_in_schema=False)
    async def admin_sso_remove(request: Request) -> Response:
        async def remove(request: Request, session: WebSession) -> Response:
            done = await shell.upstream.api(session, "DELETE", "/v1/sso")
            notice = "Company sign-in disconnected: everyone signs in with a password."
            return await redirect_or_page(
                request, session, done, sso_page, to="/t/admin/sso", notice=notice
            )

        return await shell.run(request, remove, operator=False)
