"""The platform's own database role: made once by an administrator, used by everything else.

A superuser (or a ``CREATEROLE`` administrator) runs this once per deployment; afterwards
``plexica migrate``, the core, the worker and the CLI log in as the owner role, which is no
superuser (ADR 0111): it owns the database and the objects it creates, may create roles (and so
administers the plugin roles it makes), and may end sessions of roles that are no superuser
(``pg_signal_backend``), which it needs to stop a plugin migration that outlives its time.

``python -m plexica.kit.bootstrap ADMIN_URL DATABASE ROLE PASSWORD_FILE`` prints the owner's
URL; the local topology uses it, and the Compose and Helm init scripts run the same SQL.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from plexica.kit.db import quote_ident

# Everything a superuser made in the platform's database before it had an owner (a `plexica up`
# data directory from before ADR 0111) becomes the owner's; plugin roles become its to manage.
_ADOPT = """
DO $adopt$
DECLARE
    owner_role text := {owner};
    admin_role text := current_user;
    r record;
BEGIN
    FOR r IN SELECT n.nspname FROM pg_namespace n JOIN pg_roles o ON o.oid = n.nspowner
             WHERE o.rolname = admin_role AND n.oid >= 16384 LOOP
        EXECUTE format('ALTER SCHEMA %I OWNER TO %I', r.nspname, owner_role);
    END LOOP;
    FOR r IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c
             JOIN pg_roles o ON o.oid = c.relowner
             WHERE o.rolname = admin_role AND c.oid >= 16384
               AND c.relkind IN ('r', 'p', 'v', 'm', 'f') LOOP
        EXECUTE format('ALTER %s %s OWNER TO %I',
            CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                           WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
            r.name, owner_role);
    END LOOP;
    -- Sequences of identity/serial columns followed their table; the others go one by one.
    FOR r IN SELECT c.oid::regclass AS name FROM pg_class c JOIN pg_roles o ON o.oid = c.relowner
             WHERE o.rolname = admin_role AND c.oid >= 16384 AND c.relkind = 'S' LOOP
        EXECUTE format('ALTER SEQUENCE %s OWNER TO %I', r.name, owner_role);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS name FROM pg_proc p JOIN pg_roles o ON o.oid = p.proowner
             WHERE o.rolname = admin_role AND p.oid >= 16384 LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO %I', r.name, owner_role);
    END LOOP;
    FOR r IN SELECT t.oid::regtype AS name FROM pg_type t JOIN pg_roles o ON o.oid = t.typowner
             WHERE o.rolname = admin_role AND t.oid >= 16384 AND t.typrelid = 0
               AND t.typelem = 0 LOOP
        EXECUTE format('ALTER TYPE %s OWNER TO %I', r.name, owner_role);
    END LOOP;
    IF to_regclass('platform.plugin_installations') IS NOT NULL THEN
        FOR r IN SELECT g.rolname FROM pg_roles g
                 WHERE g.rolname IN (SELECT db_role FROM platform.plugin_installations
                                     UNION SELECT role_name FROM platform.plugin_logins)
                   AND NOT pg_has_role(owner_role, g.oid, 'USAGE WITH ADMIN OPTION') LOOP
            EXECUTE format('GRANT %I TO %I WITH ADMIN OPTION, INHERIT TRUE, SET TRUE',
                           r.rolname, owner_role);
        END LOOP;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'plugin_api') THEN
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA plugin_api'
                       ' REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC', owner_role);
    END IF;
END
$adopt$;
"""


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def ensure_owner(
    admin_url: str, database: str, role: str, password: str, *, createdb: bool = False
) -> str:
    """Create (or update) the owner role and its database; return the owner's URL.

    Idempotent: run it on every start of an embedded server. ``createdb`` is for test servers,
    whose owner makes a database per test worker."""
    url = make_url(admin_url)
    admin = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
    r = quote_ident(role)
    attributes = (
        f"LOGIN NOSUPERUSER CREATEROLE {'CREATEDB' if createdb else 'NOCREATEDB'}"
        " NOREPLICATION NOBYPASSRLS"
    )
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
        verb = "ALTER" if exists else "CREATE"
        await admin.execute(f"{verb} ROLE {r} {attributes} PASSWORD {_literal(password)}")
        await admin.execute(f"GRANT pg_signal_backend TO {r}")
        found = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if found:
            await admin.execute(f"ALTER DATABASE {quote_ident(database)} OWNER TO {r}")
        else:
            await admin.execute(f"CREATE DATABASE {quote_ident(database)} OWNER {r}")
    finally:
        await admin.close()
    if found:
        inside = await asyncpg.connect(
            url.set(drivername="postgresql", database=database).render_as_string(False)
        )
        try:
            await inside.execute(_ADOPT.format(owner=_literal(role)))
        finally:
            await inside.close()
    owner = url.set(username=role, password=password, database=database)
    return owner.render_as_string(hide_password=False)


def owner_password(path: Path) -> str:
    """The owner's generated password, kept owner-only in ``path`` (made on first use)."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    path.chmod(0o600)
    return path.read_text().strip()


def ensure_owner_sync(
    admin_url: str, database: str, role: str, password: str, *, createdb: bool = False
) -> str:
    """``ensure_owner`` from synchronous start-up code (also when a loop already runs)."""
    coro = ensure_owner(admin_url, database, role, password, createdb=createdb)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        sys.stderr.write("usage: python -m plexica.kit.bootstrap ADMIN_URL DATABASE ROLE FILE\n")
        return 2
    admin_url, database, role, password_file = argv
    url = asyncio.run(ensure_owner(admin_url, database, role, owner_password(Path(password_file))))
    sys.stdout.write(url + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
