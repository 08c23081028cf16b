"""Wake the relay and the delivery loops on NOTIFY instead of polling them (ADR 0190).

Statement-level triggers: one notification per inserting statement, and PostgreSQL folds the
same notification within a transaction into one, so a batch costs one.

Revision ID: e0004
Revises: e0003
"""

from alembic import op

revision = "e0004"
down_revision = "e0003"
branch_labels = None
depends_on = None

NOTIFY = """CREATE FUNCTION platform.events_notify() RETURNS trigger LANGUAGE plpgsql
AS $fn$ BEGIN PERFORM pg_notify(TG_ARGV[0], ''); RETURN NULL; END $fn$"""

TRIGGERS = {
    "outbox_notify": ("platform.outbox", "plexica_outbox"),
    "event_deliveries_notify": ("platform.event_deliveries", "plexica_deliveries"),
}


def upgrade() -> None:
    op.execute(NOTIFY)
    for name, (table, channel) in TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {name} AFTER INSERT ON {table} FOR EACH STATEMENT"
            f" EXECUTE FUNCTION platform.events_notify('{channel}')"
        )


def downgrade() -> None:
    for name, (table, _) in TRIGGERS.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS platform.events_notify()")
