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
    echo_fields,
    fail,
    platform_settings,
    table,
    to_jsonable,
)
from plexica.cli.database import identity_provider, run_on_database
from plexica.cli.identity import TenantOption, realm_of

if TYPE_CHECKING:
    from plexica.identity.service_clients import ServiceClients
    from plexica.kit.db import Database

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
    from plexica.identity import service
    from plexica.identity.service_clients import ServiceClients
    from plexica_sdk.errors import PlexicaError

    settings = platform_settings("cli", *target)
    realm = realm_of(tenant)

    async def with_clients(db: Database) -> T:
        async with identity_provider(settings, db) as adapter, db.session() as session:
            found = await service.realm_or_404(session, realm)
            clients = ServiceClients(session, adapter, None, realm, found["tenant_id"], "cli")
            return await action(clients)

    try:
        return run_on_database(settings, with_clients, pool_size=1)
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
    echo_fields(value, as_json, lambda v: json.dumps(v) if isinstance(v, dict | list) else v)


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


def _on_client(
    name: str,
    doc: str,
    call: tuple[str, str],
    action: Callable[[ServiceClients, str], Awaitable[Any]],
) -> None:
    """A command ``name`` on one client: ``call`` (method, path under the client's) over the API,
    or ``action`` on the database; prints the client (and a new secret, if any)."""

    def command(
        client_id: ClientArg,
        tenant: TenantOption = None,
        *,
        as_json: JsonOpt = False,
        data_dir: DataDirOpt = None,
        url: UrlOpt = None,
    ) -> None:
        method, path = call
        api_call = (method, f"/{client_id}{path}", None)
        target = (data_dir, url)
        _emit(_do(tenant, target, as_json, api_call, lambda c: action(c, client_id)), as_json)

    command.__doc__ = doc
    service_client_app.command(name)(command)


_on_client(
    "disable",
    "Disable: no new tokens, and the tokens it has are refused.",
    ("POST", "/disable"),
    lambda clients, client_id: clients.set_enabled(client_id, False),
)
_on_client(
    "enable",
    "Enable again (tokens issued before it was disabled stay refused).",
    ("POST", "/enable"),
    lambda clients, client_id: clients.set_enabled(client_id, True),
)
_on_client(
    "rotate-secret",
    "Print a new secret; the old one and the tokens it got stop working.",
    ("POST", "/rotate-secret"),
    lambda clients, client_id: clients.rotate_secret(client_id),
)
_on_client(
    "revoke",
    "Delete the client from the provider and refuse its tokens.",
    ("DELETE", ""),
    lambda clients, client_id: clients.revoke(client_id),
)
