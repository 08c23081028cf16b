"""``plexica token`` and ``plexica user ...``: identity from the command line."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import httpx
import typer

from plexica.cli import runtime
from plexica.cli.common import database_settings, fail, settings_or_exit

user_app = typer.Typer(no_args_is_help=True, help="Manage users (built-in provider or Keycloak).")
UP_DEFAULT_URL = "http://127.0.0.1:8000"  # where `plexica up` listens unless told otherwise

TenantOption = Annotated[
    str | None, typer.Option(help="Tenant slug (default: the operator realm).")
]


def realm_of(tenant: str | None) -> str:
    from plexica.identity.service import OPERATOR_REALM

    return OPERATOR_REALM if tenant is None else "plexica-" + tenant


def token(
    user: Annotated[str, typer.Option(help="The user's email.")],
    tenant: TenantOption = None,
    url: Annotated[
        str | None,
        typer.Option(help="Platform URL (default: PLEXICA_PUBLIC_URL, else plexica up's)."),
    ] = None,
) -> None:
    """Print an access token (password from PLEXICA_PASSWORD or a prompt)."""
    from plexica.identity.client import LoginError, password_login
    from plexica.identity.service import issuer_url

    settings = settings_or_exit("cli")
    password = os.environ.get("PLEXICA_PASSWORD") or typer.prompt("Password", hide_input=True)
    if url is None:
        explicit = settings.keycloak_url or settings.public_url
        running = runtime.read(settings.data_dir.expanduser())
        fallback = running["url"] if running else UP_DEFAULT_URL
        url = str(explicit).rstrip("/") if explicit else str(fallback)
    issuer = issuer_url(url, realm_of(tenant))

    async def run() -> str:
        async with httpx.AsyncClient(timeout=15.0) as http:
            body = await password_login(http, issuer, user, password)
        return str(body["access_token"])

    try:
        typer.echo(asyncio.run(run()))
    except LoginError as exc:
        raise fail(f"sign-in refused: {exc}", code=1) from None
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach {issuer}: {exc}", code=1) from None


@user_app.command("reset-password")
def reset_password(
    email: Annotated[str, typer.Argument(help="The user's email.")],
    tenant: TenantOption = None,
) -> None:
    """Give the user a new generated password and print it (built-in provider or Keycloak)."""
    from plexica.audit import service as audit
    from plexica.composition import identity_adapter
    from plexica.identity import repository, service
    from plexica.kit.db import Database
    from plexica_sdk.errors import NotFoundError, PlexicaError

    settings = database_settings()
    realm = realm_of(tenant)
    password = service.generate_password()

    async def run() -> None:
        db = Database(settings.sqlalchemy_url, pool_size=1)
        adapter = identity_adapter(settings, db)
        try:
            async with db.session() as session:
                found = await repository.get_realm(session, realm)
                if found is None:
                    raise NotFoundError("no such realm")
            user = await adapter.set_password(realm, email.strip().lower(), password)
            async with db.session() as session:
                await audit.record(
                    session, "cli", "identity.user.password_reset", found["tenant_id"],
                    f"user:{user.id}",
                )  # fmt: skip
                await repository.purge_expired(session, service.now_utc())
        finally:
            aclose = getattr(adapter, "aclose", None)
            if aclose is not None:
                await aclose()
            await db.dispose()

    try:
        asyncio.run(run())
    except PlexicaError as exc:
        raise fail(exc.message, code=1) from None
    typer.echo(password)
