"""Alembic environment for the platform schema. Run through plexica.kit.migrate."""

from alembic import context
from sqlalchemy import text

from plexica.kit.db import PLATFORM_SCHEMA

connection = context.config.attributes["connection"]
connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{PLATFORM_SCHEMA}"'))
context.configure(
    connection=connection,
    version_table_schema=PLATFORM_SCHEMA,
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
