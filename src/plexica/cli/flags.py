"""``plexica flag``: list, create, retarget and toggle feature flags (through the core's API, or
thin over FlagService on the database)."""

from __future__ import annotations

import getpass
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from plexica.cli.api import reach
from plexica.cli.common import (
    DataDirOpt,
    JsonOpt,
    UrlOpt,
    echo_json,
    fail,
    platform_settings,
    table,
    to_jsonable,
)
from plexica.cli.database import run_on_database

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from plexica.flags.service import FlagService
    from plexica.kit.db import Database
    from plexica_sdk.flags import FlagDefinition, Value

flag_app = typer.Typer(no_args_is_help=True, help="Feature flags: list, create, set, toggle.")
T = TypeVar("T")


def _actor() -> str:
    return "cli:" + getpass.getuser()


def _run(
    action: Callable[[FlagService, Database], Awaitable[T]],
    data_dir: Path | None = None,
    url: str | None = None,
) -> T:
    settings = platform_settings("cli", data_dir, url)
    # Imported here so that `plexica --help` and other commands stay fast.
    from plexica.flags.cache import FlagCache, LocalBus, RedisBus
    from plexica.flags.service import FlagService
    from plexica_sdk.errors import PlexicaError

    async def with_service(db: Database) -> T:
        bus = RedisBus(str(settings.redis_url)) if settings.redis_url else LocalBus()
        try:
            return await action(FlagService(FlagCache(db), bus), db)
        finally:
            await bus.close()

    try:
        return run_on_database(settings, with_service, pool_size=2)
    except PlexicaError as exc:
        raise fail(f"{exc.code}: {exc.message}") from None


def _change(
    change: Callable[[FlagService, AsyncSession], Awaitable[FlagDefinition]],
    data_dir: Path | None,
    url: str | None,
) -> FlagDefinition:
    """``change`` committed, then announced on the bus: every process drops the flag's cache."""

    async def action(service: FlagService, db: Database) -> FlagDefinition:
        async with db.session() as session:
            flag = await change(service, session)
        await service.bus.publish(flag.key)
        return flag

    return _run(action, data_dir, url)


def _value(text: str) -> Value:
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    return parsed if isinstance(parsed, bool | int | float | str) else text


def _pairs(items: list[str] | None, what: str) -> dict[str, str] | None:
    if items is None:
        return None
    out: dict[str, str] = {}
    for item in items:
        name, sep, variant = item.partition("=")
        if not sep or not name or not variant:
            raise fail(f"{what} must look like NAME=VARIANT, got {item!r}")
        out[name] = variant
    return out


def _show(flag: FlagDefinition | dict[str, Any]) -> None:
    data = flag if isinstance(flag, dict) else flag.model_dump(mode="json")
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


@flag_app.command("list")
def list_flags(as_json: JsonOpt = False, data_dir: DataDirOpt = None, url: UrlOpt = None) -> None:
    """Every flag with its state."""
    api = reach(data_dir, url, as_json=as_json)
    if api is not None:
        flags: list[dict[str, Any]] = api.call("GET", "/v1/flags")
    else:

        async def action(service: FlagService, db: Database) -> list[FlagDefinition]:
            async with db.session() as session:
                return await service.all(session)

        flags = to_jsonable(_run(action, data_dir, url))
    if as_json:
        echo_json(flags)
        return
    rows = [
        {
            "key": f["key"],
            "state": "on" if f["enabled"] else "off",
            "kind": f["kind"],
            "default": f["default_variant"],
            "rollout": (
                f"{f['rollout']['variant']}:{f['rollout']['percentage']:g}%"
                if f.get("rollout")
                else None
            ),
            "version": f"v{f['version']}",
        }
        for f in flags
    ]
    table(rows, ["key", "state", "kind", "default", "rollout", "version"], empty="no flags")


@flag_app.command("create")
def create(
    key: str,
    *,
    variant: Annotated[
        list[str] | None, typer.Option(help="NAME=VALUE (variant flags); JSON values")
    ] = None,
    default: Annotated[str, typer.Option(help="The variant served by default.")] = "off",
    off: Annotated[str | None, typer.Option(help="Served when switched off.")] = None,
    description: str = "",
    disabled: Annotated[bool, typer.Option(help="Create it switched off.")] = False,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Create a flag: boolean (variants on/off) unless --variant is given."""
    from plexica.flags.schemas import FlagIn

    variants = None
    if variant:
        variants = {k: _value(v) for k, v in (_pairs(variant, "--variant") or {}).items()}
    body = FlagIn(
        key=key,
        kind="variant" if variants else "boolean",
        description=description,
        variants=variants,
        default_variant=default,
        off_variant=off,
        enabled=not disabled,
    )
    api = reach(data_dir, url)
    if api is not None:
        _show(api.call("POST", "/v1/flags", body.model_dump(mode="json")))
        return
    _show(_change(lambda service, s: service.create(s, _actor(), body), data_dir, url))


@flag_app.command("set")
def set_targeting(
    key: str,
    *,
    default: Annotated[str | None, typer.Option(help="The default variant.")] = None,
    tenant: Annotated[list[str] | None, typer.Option(help="TENANT=VARIANT (id or slug)")] = None,
    plan: Annotated[list[str] | None, typer.Option(help="PLAN=VARIANT")] = None,
    ring: Annotated[list[str] | None, typer.Option(help="RING=VARIANT")] = None,
    rollout: Annotated[str | None, typer.Option(help="VARIANT:PERCENT, e.g. on:25")] = None,
    no_rollout: Annotated[bool, typer.Option(help="Remove the rollout.")] = False,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Change a flag's targeting; lists given replace the current ones."""
    from plexica.flags.schemas import FlagPatch
    from plexica_sdk.flags import Rollout

    fields: dict[str, object] = {}
    if default is not None:
        fields["default_variant"] = default
    for name, items in (("tenants", tenant), ("plans", plan), ("rings", ring)):
        pairs = _pairs(items, "--" + name[:-1])
        if pairs is not None:
            fields[name] = pairs
    if rollout is not None:
        variant, _, pct = rollout.partition(":")
        try:
            fields["rollout"] = Rollout(variant=variant, percentage=float(pct))
        except ValueError:
            raise fail(
                "--rollout must look like VARIANT:PERCENT with 0 <= PERCENT <= 100"
            ) from None
    elif no_rollout:
        fields["rollout"] = None
    patch = FlagPatch.model_validate(fields)
    api = reach(data_dir, url)
    if api is not None:
        changed = patch.model_dump(mode="json", exclude_unset=True)
        _show(api.call("PATCH", f"/v1/flags/{key}", changed))
        return
    _show(_change(lambda service, s: service.update(s, _actor(), key, patch), data_dir, url))


@flag_app.command("toggle")
def toggle(
    key: str,
    on: Annotated[
        bool | None, typer.Option("--on/--off", help="Set a state; flip without.")
    ] = None,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Switch a flag on or off (the fastest rollback)."""
    api = reach(data_dir, url)
    if api is not None:
        flag = api.call("POST", f"/v1/flags/{key}/toggle", None if on is None else {"enabled": on})
    else:
        toggled = _change(lambda service, s: service.toggle(s, _actor(), key, on), data_dir, url)
        flag = to_jsonable(toggled)
    typer.echo(f"{flag['key']} is {'on' if flag['enabled'] else 'off'} (v{flag['version']})")
