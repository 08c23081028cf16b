"""``plexica token`` and ``plexica user ...``: identity from the command line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from plexica.cli.common import EXIT_REFUSED, DataDirOpt, UrlOpt, fail, platform_settings

if TYPE_CHECKING:
    from plexica.kit.db import Database

user_app = typer.Typer(no_args_is_help=True, help="Manage users (built-in provider or Keycloak).")

TenantOption = Annotated[
    str | None, typer.Option(help="Tenant slug (default: the operator realm).")
]


def realm_of(tenant: str | None) -> str:
    from plexica.identity.names import OPERATOR_REALM
    from plexica.kit.provisioning import REALM_PREFIX

    return OPERATOR_REALM if tenant is None else REALM_PREFIX + tenant


def token(
    user: Annotated[str, typer.Option(help="The user's email.")],
    tenant: TenantOption = None,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Print an access token (password from PLEXICA_PASSWORD or a prompt; with two-step
    verification, the code from PLEXICA_OTP or a prompt)."""
    import httpx

    from plexica.identity.client import LoginError, password_login
    from plexica.identity.service import issuer_url

    settings = platform_settings("token", data_dir, url, database=False)
    if settings.keycloak_url is None and settings.public_url is None:
        platform_settings("cli", data_dir, url)  # says that no platform runs, and how to start
    password = os.environ.get("PLEXICA_PASSWORD") or typer.prompt("Password", hide_input=True)
    issuer = issuer_url(settings.issuer_base_url, realm_of(tenant))

    async def run() -> str:
        async with httpx.AsyncClient(timeout=15.0) as http:
            body = await password_login(http, issuer, user, password, code=_code)
        return str(body["access_token"])

    try:
        import asyncio

        typer.echo(asyncio.run(run()))
    except LoginError as exc:
        raise fail(f"sign-in refused: {exc}", code=EXIT_REFUSED) from None
    except httpx.HTTPError as exc:
        reason = type(exc).__name__
        raise fail(f"cannot reach {issuer} ({reason}): is the platform running?") from None


@user_app.command("reset-password")
def reset_password(
    email: Annotated[str, typer.Argument(help="The user's email.")],
    tenant: TenantOption = None,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Give the user a new generated password and print it (built-in provider or Keycloak).

    Over the API with the realm's own token: a tenant admin's with --tenant, an operator's
    without (ADR 0166); with PLEXICA_DATABASE_URL on the database (break-glass)."""
    from plexica.cli.api import reach_realm

    api = reach_realm(data_dir, url, tenant)
    if api is not None:
        wanted = email.strip().lower()
        users = api.call("GET", "/v1/users")
        found = next((u for u in users if str(u["email"]).lower() == wanted), None)
        if found is None:
            raise fail("no such user (not_found)", code=EXIT_REFUSED)
        typer.echo(api.call("POST", f"/v1/users/{found['id']}/reset-password")["password"])
        return
    _reset_on_database(email, tenant, data_dir, url)


def _reset_on_database(
    email: str, tenant: str | None, data_dir: Path | None, url: str | None
) -> None:
    from plexica.audit import service as audit
    from plexica.cli.database import identity_provider, run_on_database
    from plexica.identity import service
    from plexica_sdk.errors import NotFoundError, PlexicaError

    settings = platform_settings("cli", data_dir, url)
    realm = realm_of(tenant)
    password = service.generate_password()

    async def reset(db: Database) -> None:
        async with identity_provider(settings, db) as adapter:
            async with db.session() as session:
                found = await service.find_realm(session, realm)
                if found is None:
                    raise NotFoundError("no such realm")
            user = await adapter.set_password(realm, email.strip().lower(), password)
            async with db.session() as session:
                await audit.record(
                    session, "cli", "identity.user.password_reset", found["tenant_id"],
                    f"user:{user.id}",
                )  # fmt: skip
                await service.purge_expired(session)

    try:
        run_on_database(settings, reset, pool_size=1)
    except PlexicaError as exc:
        raise fail(exc.message, code=EXIT_REFUSED) from None
    typer.echo(password)


def _code() -> str:
    return os.environ.get("PLEXICA_OTP") or str(typer.prompt("Two-step verification code"))
