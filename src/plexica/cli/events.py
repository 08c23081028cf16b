"""``plexica events``: operate the event pipeline (dead letters, replays), through the core's API
(``/v1/events``) or on the database (ADR 0165)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from uuid import UUID

import typer

from plexica.cli.api import reach
from plexica.cli.common import DataDirOpt, UrlOpt, fail, platform_settings, table, to_jsonable
from plexica.cli.database import run_on_database

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from plexica.kit.db import Database

app = typer.Typer(no_args_is_help=True, help="Operate events: dead letters and replays.")
dead_letters = typer.Typer(no_args_is_help=True, help="Events plugins failed to handle.")
app.add_typer(dead_letters, name="dead-letters")

T = TypeVar("T")


def _run(
    work: Callable[[AsyncSession], Awaitable[T]],
    data_dir: Path | None = None,
    url: str | None = None,
) -> T:
    settings = platform_settings("cli", data_dir, url)
    from plexica_sdk.errors import PlexicaError

    async def in_session(db: Database) -> T:
        async with db.session() as session:
            return await work(session)

    try:
        return run_on_database(settings, in_session, pool_size=1)
    except PlexicaError as exc:
        raise fail(f"{exc.code}: {exc.message}") from None


@dead_letters.command("list")
def list_(
    *,
    plugin: Annotated[str | None, typer.Option(help="Only this plugin's.")] = None,
    tenant: Annotated[UUID | None, typer.Option(help="Only this tenant's.")] = None,
    status: Annotated[str, typer.Option(help="pending, retried, discarded or all.")] = "pending",
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """List dead letters, newest first."""
    statuses = ("pending", "retried", "discarded")
    if status not in {"all", *statuses}:
        raise fail(f"unknown status {status!r}")
    api = reach(data_dir, url, as_json=as_json)
    if api is not None:
        letters: list[dict[str, Any]] = []
        for wanted in statuses if status == "all" else (status,):
            params = {"status": wanted, "limit": limit, "plugin_id": plugin, "tenant_id": tenant}
            found = api.call("GET", "/v1/events/dead-letters", params=_present(params))
            letters.extend(found)
        letters.sort(key=lambda letter: str(letter["created_at"]), reverse=True)
        letters = letters[:limit]
    else:
        from plexica.events import service
        from plexica.events.schemas import DeadLetterStatus

        chosen = None if status == "all" else DeadLetterStatus(status)
        letters = to_jsonable(
            _run(
                lambda s: service.list_dead_letters(
                    s, plugin_id=plugin, tenant_id=tenant, status=chosen, limit=limit
                ),
                data_dir,
                url,
            )
        )
    if as_json:
        for letter in letters:
            typer.echo(json.dumps(letter))
        return
    rows = [{**letter, "error": str(letter["error"])[:80]} for letter in letters]
    columns = ["id", "status", "plugin_id", "type", "attempts", "error"]
    table(rows, columns, empty="no dead letters")


def _present(params: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) for k, v in params.items() if v is not None}


def _settle(dead_letter_id: UUID, how: str, data_dir: Path | None, url: str | None) -> None:
    """``how`` (``retry`` or ``discard``) through the core's API, else the service's own on the
    database."""
    api = reach(data_dir, url)
    if api is not None:
        api.call("POST", f"/v1/events/dead-letters/{dead_letter_id}/{how}")
        return
    from plexica.events import service

    settle = service.retry_dead_letter if how == "retry" else service.discard_dead_letter
    _run(lambda s: settle(s, dead_letter_id), data_dir, url)


@dead_letters.command("retry")
def retry(dead_letter_id: UUID, data_dir: DataDirOpt = None, url: UrlOpt = None) -> None:
    """Deliver a dead letter to its plugin again."""
    _settle(dead_letter_id, "retry", data_dir, url)
    typer.echo(f"queued {dead_letter_id} for delivery")


@dead_letters.command("discard")
def discard(dead_letter_id: UUID, data_dir: DataDirOpt = None, url: UrlOpt = None) -> None:
    """Give up on a dead letter."""
    _settle(dead_letter_id, "discard", data_dir, url)
    typer.echo(f"discarded {dead_letter_id}")


@app.command("replay")
def replay(
    plugin: Annotated[str, typer.Argument(help="The plugin to replay to.")],
    tenant: Annotated[UUID, typer.Argument(help="The tenant whose history is replayed.")],
    types: Annotated[
        list[str] | None,
        typer.Option("--type", help="Only these types (default: all consumed)."),
    ] = None,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Replay a tenant's published events of the types a plugin consumes, to that plugin."""
    api = reach(data_dir, url)
    if api is not None:
        body = {"plugin_id": plugin, "tenant_id": str(tenant), "event_types": types}
        queued = api.call("POST", "/v1/events/replays", body)["queued"]
    else:
        from plexica.events import service
        from plexica.events.catalog import schema_base

        base = schema_base(platform_settings("cli", data_dir, url))
        queued = _run(
            lambda s: service.replay_for_plugin(s, plugin, tenant, types, schema_base=base),
            data_dir,
            url,
        )
    typer.echo(f"queued {queued} events for {plugin}")
