"""``plexica tenant ...``: operate tenants through the core's API (ADR 0165), or straight on the
database through the tenant service when ``PLEXICA_DATABASE_URL`` is the way in."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from plexica.cli.api import reach
from plexica.cli.common import (
    EXIT_REFUSED,
    DataDirOpt,
    JsonOpt,
    UrlOpt,
    fail,
    key_values,
    platform_settings,
    table,
)
from plexica.cli.database import run_on_database

# Imported when a command runs, so that `plexica --help` and other commands stay quick.
if TYPE_CHECKING:
    from pydantic import BaseModel

    from plexica.composition import Services
    from plexica.kit.db import Database
    from plexica.tenants.schemas import Tenant

tenant_app = typer.Typer(no_args_is_help=True, help="Create and operate tenants.")

T = TypeVar("T")

KeyArg = Annotated[str, typer.Argument(help="The tenant's slug or id.")]


STATES = ("provisioning", "active", "suspended", "pending_deletion", "deleted", "failed")


def run(
    data_dir: Path | None,
    as_json: bool,
    action: Callable[[Services], Awaitable[T]],
    url: str | None = None,
) -> T:
    settings = platform_settings("cli", data_dir, url)
    from plexica.composition import build_services
    from plexica_sdk.errors import PlexicaError
    from plexica_sdk.logs import configure_logging

    # Logs go to stderr and only when they matter: stdout is the command's answer.
    level = "WARNING" if settings.log_level == "INFO" else settings.log_level
    configure_logging("cli", level, settings.log_format)

    async def with_services(db: Database) -> T:
        services = build_services(settings, db)
        await services.start()
        try:
            return await action(services)
        finally:
            await services.stop()

    try:
        return run_on_database(settings, with_services, pool_size=2)
    except PlexicaError as exc:
        if as_json:
            typer.echo(
                json.dumps(
                    {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}
                )
            )
            raise typer.Exit(EXIT_REFUSED) from None
        raise fail(f"{exc.message} ({exc.code})", code=EXIT_REFUSED) from None


def _dump(value: BaseModel | dict[str, Any]) -> dict[str, Any]:
    return value if isinstance(value, dict) else value.model_dump(mode="json")


def _one(value: BaseModel | dict[str, Any], as_json: bool) -> None:
    t = _dump(value)
    typer.echo(json.dumps(t) if as_json else f"{t['slug']}: {t['state']} (id {t['id']})")


def _call(  # noqa: PLR0917 - the command's own parameters
    key: str | None,
    data_dir: Path | None,
    url: str | None,
    as_json: bool,
    http: tuple[str, str],
    action: Callable[[Services], Awaitable[T]],
) -> dict[str, Any] | T:
    """``http`` (method, path under /v1/tenants) through the API, else ``action`` on the DB."""
    api = reach(data_dir, url, as_json=as_json)
    if api is None:
        return run(data_dir, as_json, action, url)
    method, path = http
    found: dict[str, Any] = api.call(method, "/v1/tenants" + path.format(key=key))
    return found


@tenant_app.command("create")
def create(
    slug: Annotated[str, typer.Argument(help="Lowercase letters, digits and '-'.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    admin_email: Annotated[str, typer.Option(help="E-mail of the tenant's first admin.")],
    *,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Create a tenant: schema, realm, bucket, default plugins, then active."""
    fields = {"slug": slug[:200], "name": name[:200], "admin_email": admin_email[:320]}
    api = reach(data_dir, url, as_json=as_json)
    if api is not None:
        _one(api.call("POST", "/v1/tenants", fields), as_json)
        return
    from plexica.tenants.schemas import TenantCreate

    body = TenantCreate(**fields)
    _one(run(data_dir, as_json, lambda s: s.tenants.create(body), url), as_json)


@tenant_app.command("list")
def list_(
    state: Annotated[
        str | None, typer.Option(help=f"Only tenants in this state: {', '.join(STATES)}.")
    ] = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """List tenants (all pages)."""
    if state is not None and state not in STATES:
        raise fail(f"unknown state {state!r} (one of: {', '.join(STATES)})")
    api = reach(data_dir, url, as_json=as_json)
    rows: list[dict[str, Any]] = []
    if api is not None:
        after: str | None = None
        while True:
            params = {"limit": 200, **({"state": state} if state else {})}
            page = api.call("GET", "/v1/tenants", params={**params, "after": after})
            rows += page["items"]
            if page["next"] is None:
                break
            after = page["next"]
    else:
        rows = [_dump(t) for t in run(data_dir, as_json, lambda s: _all(s, state), url)]
    if as_json:
        typer.echo(json.dumps(rows))
    else:
        table(rows, ["slug", "state", "id", "name"], empty="no tenants")


async def _all(s: Services, state: str | None) -> list[Tenant]:
    from plexica.tenants.schemas import State

    wanted = State(state) if state else None

    items: list[Tenant] = []
    after: str | None = None
    while True:
        page = await s.tenants.list_tenants(state=wanted, after=after, limit=200)
        items += page.items
        if page.next is None:
            return items
        after = page.next


@tenant_app.command("show")
def show(
    key: KeyArg, as_json: JsonOpt = False, data_dir: DataDirOpt = None, url: UrlOpt = None
) -> None:
    """A tenant with its provisioning/deletion steps and state history."""
    api = reach(data_dir, url, as_json=as_json)
    if api is not None:
        tenant = api.call("GET", f"/v1/tenants/{key}")
        steps = api.call("GET", f"/v1/tenants/{key}/steps")
    else:

        async def both(s: Services) -> tuple[Tenant, Any]:
            return await s.tenants.get(key), await s.tenants.steps_of(key)

        found, recorded = run(data_dir, as_json, both, url)
        tenant, steps = _dump(found), _dump(recorded)
    if as_json:
        typer.echo(json.dumps({**tenant, "steps": steps["steps"], "history": steps["history"]}))
        return
    fields = ("id", "slug", "name", "admin_email", "state", "schema_name", "schema_version")
    pairs: list[tuple[str, object]] = [(f, tenant.get(f)) for f in fields]
    if tenant.get("failure_reason"):
        pairs.append(("failure_reason", tenant["failure_reason"]))
    pairs.append(("created_at", tenant.get("created_at")))
    key_values(pairs)
    typer.echo("")
    rows = [
        {"phase": st["phase"], "step": st["name"], "status": st["status"], "error": st["error"]}
        for st in steps["steps"]
    ]
    table(rows, ["phase", "step", "status", "error"], empty="no steps recorded")


def _action(name: str, doc: str) -> None:
    def command(
        key: KeyArg, as_json: JsonOpt = False, data_dir: DataDirOpt = None, url: UrlOpt = None
    ) -> None:
        action = lambda s: getattr(s.tenants, name)(key)  # noqa: E731
        _one(_call(key, data_dir, url, as_json, ("POST", "/{key}/" + name), action), as_json)

    command.__doc__ = doc
    tenant_app.command(name)(command)


_action("suspend", "Suspend a tenant: its users get 403 at once.")
_action("reactivate", "Reactivate a suspended tenant.")
_action("retry", "Retry the provisioning of a failed tenant.")


@tenant_app.command("delete")
def delete(
    key: KeyArg,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Delete a tenant and every resource it has (run again to resume after a failure)."""
    if not yes and not (
        sys.stdin.isatty() and typer.confirm(f"delete tenant {key} and all its data?")
    ):
        raise fail("not confirmed (pass --yes)")
    action = lambda s: s.tenants.delete(key)  # noqa: E731
    _one(_call(key, data_dir, url, as_json, ("DELETE", "/{key}"), action), as_json)


@tenant_app.command("invite-admin")
def invite_admin(
    key: KeyArg,
    status: Annotated[
        bool, typer.Option("--status", help="Only show whether the admin has accepted.")
    ] = False,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Send the first admin's invitation again: a new link, the previous one stops working.
    An accepted invitation is not sent again (`plexica user reset-password` is the break-glass
    path)."""
    from plexica.tenants import first_admin

    if status:
        found = _call(
            key, data_dir, url, as_json, ("GET", "/{key}/admin-invite"),
            lambda s: first_admin.admin_invite(s.tenants, s.first_admin, key),
        )  # fmt: skip
        shown = _dump(found)
        typer.echo(json.dumps(shown) if as_json else f"{shown['email']}: {shown['status']}")
        return
    again = lambda s: first_admin.invite_admin_again(s.tenants, s.first_admin, key, "cli")  # noqa: E731
    sent = _dump(_call(key, data_dir, url, as_json, ("POST", "/{key}/admin-invite"), again))
    if as_json:
        typer.echo(json.dumps(sent))
    else:
        typer.echo(f"invitation sent to {sent['email']} (link valid until {sent['expires_at']})")
