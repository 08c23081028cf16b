"""``plexica mail list``: the dev mailbox of a platform without ``PLEXICA_SMTP_URL`` (ADR 0225),
over the core API as the operator, or on the database with ``PLEXICA_DATABASE_URL``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from plexica.cli.common import DataDirOpt, UrlOpt, platform_settings

mail_app = typer.Typer(no_args_is_help=True, help="Mail the platform kept instead of sending.")


@mail_app.command("list")
def list_mail(
    to: Annotated[str | None, typer.Option(help="Only mail to this address.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Show the newest mail kept in the dev mailbox (invitations with their links)."""
    from plexica.cli.api import reach

    api = reach(data_dir, url, as_json=as_json)
    params: dict[str, Any] = {"limit": limit, **({"to": to} if to else {})}
    if api is not None:
        found: list[dict[str, Any]] = api.call("GET", "/v1/dev-mail", params=params)
    else:
        import asyncio  # only here: the command tree loads without it (test_cli_imports)

        found = asyncio.run(_on_database(data_dir, url, limit, to))
    if as_json:
        typer.echo(json.dumps(found, default=str))
        return
    for mail in found:
        typer.echo(f"--- {mail['created_at']}  to {mail['to']}  {mail['subject']}")
        typer.echo(mail["body"])
    if not found:
        typer.echo("no mail kept")


async def _on_database(
    data_dir: DataDirOpt, url: UrlOpt, limit: int, to: str | None
) -> list[dict[str, Any]]:
    from plexica.kit.db import Database
    from plexica.mail import service

    settings = platform_settings("cli", data_dir, url)
    db = Database(settings.sqlalchemy_url, pool_size=1)
    try:
        kept = await service.latest(db, limit, to.strip().lower() if to else None)
    finally:
        await db.dispose()
    return [
        {"to": m.recipient, "subject": m.subject, "body": m.body, "created_at": m.created_at}
        for m in kept
    ]
