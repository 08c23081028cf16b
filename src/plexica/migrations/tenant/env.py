"""Alembic environment for one tenant schema (``-x schema=tenant_<slug>`` via attributes)."""

from alembic import context
from sqlalchemy import text

from plexica.kit.db import quote_ident

connection = context.config.attributes["connection"]
schema = context.config.attributes["schema"]
# LOCAL: the caller runs us inside its transaction on a pooled connection, which must not keep
# this tenant's search path afterwards.
connection.execute(text(f"SET LOCAL search_path TO {quote_ident(schema)}, public"))
context.configure(connection=connection, version_table_schema=schema)
with context.begin_transaction():
    context.run_migrations()
