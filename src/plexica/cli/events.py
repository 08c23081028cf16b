"""``plexica events``: operate the event pipeline (dead letters, replays)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar
from uuid import UUID

import typer

from plexica.cli.common import DataDirOpt, UrlOpt, fail, platform_settings, table

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

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
    from plexica.kit.db import Database
    from plexica_sdk.errors import PlexicaError

    async def go() -> T:
        db = Database(settings.sqlalchemy_url, pool_size=1)
        try:
            async with db.session() as session:
                return await work(session)
        finally:
            await db.dispose()

    try:
        import asyncio

        return asyncio.run(go())
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
    from plexica.events import service
    from plexica.events.schemas import DeadLetterStatus

    if status not in {"all", *DeadLetterStatus}:
        raise fail(f"unknown status {status!r}")
    wanted = None if status == "all" else DeadLetterStatus(status)
    letters = _run(
        lambda s: service.list_dead_letters(
            s, plugin_id=plugin, tenant_id=tenant, status=wanted, limit=limit
        ),
        data_dir,
        url,
    )
    if as_json:
        for letter in letters:
            typer.echo(json.dumps(letter.model_dump(mode="json")))
        return
    rows = [{**letter.model_dump(), "error": letter.error[:80]} for letter in letters]
    columns = ["id", "status", "plugin_id", "type", "attempts", "error"]
    table(rows, columns, empty="no dead letters")


@dead_letters.command("retry")
def retry(dead_letter_id: UUID, data_dir: DataDirOpt = None, url: UrlOpt = None) -> None:
    """Deliver a dead letter to its plugin again."""
    from plexica.events import service

    _run(lambda s: service.retry_dead_letter(s, dead_letter_id), data_dir, url)
    typer.echo(f"queued {dead_letter_id} for delivery")


@dead_letters.command("discard")
def discard(dead_letter_id: UUID, data_dir: DataDirOpt = None, url: UrlOpt = None) -> None:
    """Give up on a dead letter."""
    from plexica.events import service

    _run(lambda s: service.discard_dead_letter(s, dead_letter_id), data_dir, url)
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
    from plexica.events import service

    queued = _run(lambda s: service.replay_for_plugin(s, plugin, tenant, types), data_dir, url)
    typer.echo(f"queued {queued} events for {plugin}")
