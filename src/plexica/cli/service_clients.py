"""``plexica service-client ...``: service clients through the core's API
(``/v1/service-clients``, ADR 0165) in the realm of the token (a tenant admin's token with
``--tenant``, an operator's without, ADR 0166), or of any realm straight on the database and the
identity provider (the operator's tool)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from plexica.cli.api import Api, reach_realm
from plexica.cli.common import (
    EXIT_REFUSED,
    DataDirOpt,
    JsonOpt,
    UrlOpt,
    fail,
    platform_settings,
    table,
    to_jsonable,
)
from plexica.cli.identity import TenantOption, realm_of

if TYPE_CHECKING:
    from plexica.identity.service_clients import ServiceClients

service_client_app = typer.Typer(
    no_args_is_help=True, help="Service clients (service tokens for plugins and scripts)."
)
T = TypeVar("T")
ClientArg = Annotated[str, typer.Argument(help="The client id.")]


def _run(
    tenant: str | None,
    target: tuple[Path | None, str | None],
    action: Callable[[ServiceClients], Awaitable[T]],
) -> T:
    from plexica.composition import identity_adapter
    from plexica.identity import service
    from plexica.identity.service_clients import ServiceClients
    from plexica.kit.db import Database
    from plexica_sdk.errors import PlexicaError

    settings = platform_settings("cli", *target)
    realm = realm_of(tenant)

    async def main() -> T:
        db = Database(settings.sqlalchemy_url, pool_size=1)
        adapter = identity_adapter(settings, db)
        try:
            async with db.session() as session:
                found = await service.realm_or_404(session, realm)
                clients = ServiceClients(session, adapter, None, realm, found["tenant_id"], "cli")
                return await action(clients)
        finally:
            aclose = getattr(adapter, "aclose", None)
            if aclose is not None:
                await aclose()
            await db.dispose()

    try:
        import asyncio

        return asyncio.run(main())
    except PlexicaError as exc:
        raise fail(f"{exc.message} ({exc.code})", code=EXIT_REFUSED) from None


def _api(tenant: str | None, target: tuple[Path | None, str | None], as_json: bool) -> Api | None:
    """The core's API acting in the token's own realm, which must be ``tenant``'s (or the
    operator realm's without one, ADR 0166); ``None`` for the database."""
    return reach_realm(*target, tenant, as_json=as_json)


def _do(
    tenant: str | None,
    target: tuple[Path | None, str | None],
    as_json: bool,
    call: tuple[str, str, Any],
    action: Callable[[ServiceClients], Awaitable[Any]],
) -> Any:
    """``call`` (method, path, body) over the API, or the same ``action`` on the database."""
    method, path, body = call
    api = _api(tenant, target, as_json)
    if api is not None:
        return api.call(method, "/v1/service-clients" + path, body)
    return to_jsonable(_run(tenant, target, action))


def _emit(value: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(value))
        return
    for key, item in value.items():
        typer.echo(f"{key}: {json.dumps(item) if isinstance(item, dict | list) else item}")


@service_client_app.command("list")
def list_(
    tenant: TenantOption = None,
    *,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """List the realm's service clients."""
    clients: list[dict[str, Any]] = _do(
        tenant, (data_dir, url), as_json, ("GET", "", None), lambda c: c.list()
    )
    if as_json:
        typer.echo(json.dumps(clients))
        return
    rows = [{**c, "roles": ",".join(c["roles"]) or "-"} for c in clients]
    table(rows, ["client_id", "state", "roles", "description"], empty="no service clients")


@service_client_app.command("create")
def create(  # noqa: PLR0917 - one parameter per CLI option
    client_id: ClientArg,
    role: Annotated[
        list[str] | None, typer.Option(help="A role of its tokens (repeatable).")
    ] = None,
    description: Annotated[str, typer.Option(help="What it is for.")] = "",
    tenant: TenantOption = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Create a service client and print its secret (shown once)."""
    from pydantic import ValidationError

    from plexica.identity.schemas import ServiceClientCreate

    try:
        body = ServiceClientCreate(client_id=client_id, roles=role or [], description=description)
    except ValidationError as exc:
        raise fail(f"invalid input: {exc.errors()[0]['msg']}") from None
    call = ("POST", "", body.model_dump(mode="json"))
    made = _do(tenant, (data_dir, url), as_json, call, lambda c: c.create(body))
    _emit(made, as_json)


@service_client_app.command("disable")
def disable(
    client_id: ClientArg, tenant: TenantOption = None, *, as_json: JsonOpt = False,
    data_dir: DataDirOpt = None, url: UrlOpt = None,
) -> None:  # fmt: skip
    """Disable: no new tokens, and the tokens it has are refused."""
    call = ("POST", f"/{client_id}/disable", None)
    _emit(
        _do(tenant, (data_dir, url), as_json, call, lambda c: c.set_enabled(client_id, False)),
        as_json,
    )


@service_client_app.command("enable")
def enable(
    client_id: ClientArg, tenant: TenantOption = None, *, as_json: JsonOpt = False,
    data_dir: DataDirOpt = None, url: UrlOpt = None,
) -> None:  # fmt: skip
    """Enable again (tokens issued before it was disabled stay refused)."""
    call = ("POST", f"/{client_id}/enable", None)
    _emit(
        _do(tenant, (data_dir, url), as_json, call, lambda c: c.set_enabled(client_id, True)),
        as_json,
    )


@service_client_app.command("rotate-secret")
def rotate_secret(
    client_id: ClientArg, tenant: TenantOption = None, *, as_json: JsonOpt = False,
    data_dir: DataDirOpt = None, url: UrlOpt = None,
) -> None:  # fmt: skip
    """Print a new secret; the old one and the tokens it got stop working."""
    call = ("POST", f"/{client_id}/rotate-secret", None)
    _emit(
        _do(tenant, (data_dir, url), as_json, call, lambda c: c.rotate_secret(client_id)), as_json
    )


@service_client_app.command("revoke")
def revoke(
    client_id: ClientArg, tenant: TenantOption = None, *, as_json: JsonOpt = False,
    data_dir: DataDirOpt = None, url: UrlOpt = None,
) -> None:  # fmt: skip
    """Delete the client from the provider and refuse its tokens."""
    call = ("DELETE", f"/{client_id}", None)
    _emit(_do(tenant, (data_dir, url), as_json, call, lambda c: c.revoke(client_id)), as_json)
