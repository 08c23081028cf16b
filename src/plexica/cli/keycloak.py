"""``plexica keycloak platform-client``: the deploy's one step with Keycloak's admin (ADR 0251)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from plexica.cli.common import fail, settings_or_exit

keycloak_app = typer.Typer(no_args_is_help=True, help="Keycloak set-up steps of a deployment.")


@keycloak_app.command("platform-client")
def platform_client(
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for Keycloak to answer (a first install).")
    ] = 300.0,
) -> None:
    """Make or update the platform's client in Keycloak's master realm, as Keycloak's admin
    (PLEXICA_KEYCLOAK_ADMIN_USER/_PASSWORD): PLEXICA_KEYCLOAK_CLIENT_ID with
    PLEXICA_KEYCLOAK_CLIENT_SECRET, whose service account creates realms and administers the
    platform's. Core and worker then serve with the client, never with the admin."""
    import asyncio

    from plexica.identity.keycloak_admin import IdentityUnavailableError
    from plexica.identity.keycloak_platform import PlatformClientAdmin

    settings = settings_or_exit("cli")
    admin, password = settings.keycloak_admin_user, settings.keycloak_admin_password
    client, secret = settings.keycloak_client_id, settings.keycloak_client_secret
    if settings.keycloak_url is None or admin is None or password is None:
        raise fail("set PLEXICA_KEYCLOAK_URL, PLEXICA_KEYCLOAK_ADMIN_USER and _PASSWORD")
    if client is None or secret is None:
        raise fail("set PLEXICA_KEYCLOAK_CLIENT_ID and PLEXICA_KEYCLOAK_CLIENT_SECRET")

    async def run() -> list[str]:
        deadline = time.monotonic() + wait
        async with PlatformClientAdmin(
            str(settings.keycloak_url), admin, password.get_secret_value()
        ) as kc:
            while True:
                try:
                    return await kc.ensure_platform_client(client, secret.get_secret_value())
                except IdentityUnavailableError as exc:
                    if time.monotonic() > deadline:
                        raise fail(f"Keycloak: {exc.message}", code=1) from None
                    await asyncio.sleep(2)

    granted = asyncio.run(run())
    typer.echo(f"client {client} ready; realms it administers from before: {len(granted)}")
