"""``plexica keys ...``: the realms' signing keys (ADR 0150, 0151), straight on the database."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from plexica.cli.common import database_settings, echo_fields, fail
from plexica.cli.database import identity_provider, run_on_database
from plexica.cli.identity import TenantOption, realm_of

if TYPE_CHECKING:
    from plexica.kit.db import Database
    from plexica.settings import Settings

CHECK_TIMEOUT = 15.0
keys_app = typer.Typer(no_args_is_help=True, help="Realm signing keys: list, rotate, re-encrypt.")
T = TypeVar("T")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        help="Data directory of a running `plexica up` (when PLEXICA_DATABASE_URL is unset)."
    ),
]


def _run(data_dir: Path | None, action: Callable[[Settings, Database], Awaitable[T]]) -> T:
    from plexica.identity.custody import KeyCustodyError
    from plexica_sdk.errors import PlexicaError
    from plexica_sdk.logs import configure_logging

    settings = database_settings("cli", data_dir)
    # Logs go to stderr: stdout carries the command's output.
    configure_logging("cli", "WARNING", "console")
    try:
        return run_on_database(settings, lambda db: action(settings, db), pool_size=1)
    except PlexicaError as exc:
        raise fail(f"{exc.message} ({exc.code})", code=1) from None
    except KeyCustodyError as exc:
        raise fail(str(exc), code=1) from None


@keys_app.command("list")
def list_(
    tenant: TenantOption = None,
    all_realms: Annotated[bool, typer.Option("--all", help="Every realm's keys.")] = False,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """The realm's published keys: which one signs, which are published ahead or retiring."""
    from plexica.identity import signing

    async def action(_: Settings, db: Database) -> list[signing.KeyInfo]:
        async with db.session() as session:
            return await signing.describe(session, None if all_realms else realm_of(tenant))

    found = _run(data_dir, action)
    rows = [
        {
            "realm": k.realm,
            "kid": k.kid,
            "state": k.state,
            "signs_from": k.signs_from.isoformat(),
            "retire_at": k.retire_at.isoformat() if k.retire_at else None,
            "sealed_with": k.sealed_with,
        }
        for k in found
    ]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for r in rows:
        typer.echo(
            f"{r['realm']} {r['kid']} {r['state']} signs_from={r['signs_from']}"
            f" retire_at={r['retire_at'] or '-'} sealed_with={r['sealed_with'] or 'PLAINTEXT'}"
        )


@keys_app.command("rotate")
def rotate(
    tenant: TenantOption = None,
    publish_ahead: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds the new key is published before it signs. Below the verifiers' JWKS "
            "refetch interval (5-10 s, 60 s behind an HTTP cache) a token may be refused.",
        ),
    ] = 120.0,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Rotate the realm's signing key with overlap: the new key is published now and signs after
    --publish-ahead; the old one stays published until its last token has expired."""
    from datetime import timedelta

    from plexica.audit import service as audit
    from plexica.identity import service, signing

    realm = realm_of(tenant)

    async def action(settings: Settings, db: Database) -> dict[str, str | None]:
        async with db.session() as session:
            found = await service.realm_or_404(session, realm)
        if settings.keycloak_url is not None:
            async with identity_provider(settings, db) as adapter:
                await adapter.rotate_keys(realm)  # Keycloak's own rotation: signs at once
            async with db.session() as session:
                await audit.record(
                    session, "cli", "identity.keys.rotated", found["tenant_id"], f"realm:{realm}"
                )
            return {"realm": realm, "provider": "keycloak"}
        async with db.session() as session:
            done = await signing.rotate(
                session, realm, publish_ahead=timedelta(seconds=publish_ahead)
            )
            await audit.record(
                session, "cli", "identity.keys.rotated", found["tenant_id"], f"key:{done.kid}",
                after={"realm": realm, "previous": done.previous_kid},
            )  # fmt: skip
        return {
            "realm": realm,
            "kid": done.kid,
            "signs_from": done.signs_from.isoformat(),
            "previous_kid": done.previous_kid,
            "previous_retire_at": (
                done.previous_retire_at.isoformat() if done.previous_retire_at else None
            ),
        }

    result = _run(data_dir, action)
    echo_fields(result, as_json, lambda v: v if v is not None else "-")


@keys_app.command("retire")
def retire(
    kid: Annotated[
        str, typer.Argument(help="The key id (see `plexica keys list`); after `--` if it is -...")
    ],
    tenant: TenantOption = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Unpublish a key now, before its tokens have expired (a leaked key): they stop verifying
    once verifiers refetch the JWKS. The signing key cannot be retired: rotate first."""
    from plexica.audit import service as audit
    from plexica.identity import service, signing

    realm = realm_of(tenant)

    async def action(_: Settings, db: Database) -> None:
        async with db.session() as session:
            found = await service.realm_or_404(session, realm)
            await signing.retire_now(session, realm, kid)
            await audit.record(
                session, "cli", "identity.keys.retired", found["tenant_id"], f"key:{kid}"
            )

    _run(data_dir, action)
    typer.echo(f"{kid}: retired")


@keys_app.command("re-encrypt")
def re_encrypt(data_dir: DataDirOpt = None) -> None:
    """Re-seal every realm's private key, TOTP secret and company sign-in secret with the first
    key of PLEXICA_KEY_ENCRYPTION_KEY (after putting a new one first); then the others can be
    removed from the setting."""
    from plexica.audit import service as audit
    from plexica.identity import custody, sealed

    async def action(_: Settings, db: Database) -> tuple[int, str]:
        key_id = custody.ring().primary
        async with db.session() as session:
            written = await sealed.reseal(session)
            await audit.record(
                session, "cli", "identity.keys.re_encrypted", None, None,
                after={"written": written, "key_id": key_id},
            )  # fmt: skip
        return written, key_id

    written, key_id = _run(data_dir, action)
    typer.echo(f"re-encrypted {written} key(s); every key is sealed with key id {key_id}")


def check_key_custody(settings: Settings) -> None:
    """``plexica serve core`` with the built-in provider: exit with one line when
    ``PLEXICA_KEY_ENCRYPTION_KEY`` is unset or cannot open the stored keys; seal keys still in
    plaintext. A database that does not answer is no reason to refuse: the core starts unready,
    and its identity start-up checks again (ADR 0150)."""
    import asyncio

    import structlog
    from sqlalchemy.exc import SQLAlchemyError

    from plexica.identity import custody, sealed
    from plexica.identity.custody import KeyCustodyError

    ring = custody.ring_from(settings)
    if ring is None:
        raise fail(
            "PLEXICA_KEY_ENCRYPTION_KEY is required by `plexica serve core` with the built-in "
            "identity provider: the realms' private keys are sealed with it (at least 32 "
            "characters, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
        )
    custody.install(ring)

    async def check(db: Database) -> None:
        await asyncio.wait_for(sealed.prepare(db), CHECK_TIMEOUT)

    try:
        run_on_database(settings, check, pool_size=1)
    except KeyCustodyError as exc:
        raise fail(str(exc)) from None
    except (OSError, SQLAlchemyError, TimeoutError) as exc:
        structlog.get_logger("plexica.identity").warning(
            "key_custody_check_skipped", error=str(exc), reason="database unreachable"
        )
