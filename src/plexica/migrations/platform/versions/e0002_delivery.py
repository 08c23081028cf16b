"""Event delivery: subscriptions, per-tenant installations, delivery queue, dead letters.

Revision ID: e0002
Revises: e0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "e0002"
down_revision = "e0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_subscriptions",
        sa.Column("plugin_id", sa.Text(), primary_key=True),
        sa.Column("event_type", sa.Text(), primary_key=True),
        schema="platform",
    )
    op.create_index(
        "event_subscriptions_type", "event_subscriptions", ["event_type"], schema="platform"
    )
    op.create_table(
        "event_consumers",
        sa.Column("plugin_id", sa.Text(), primary_key=True),
        sa.Column("tenant_id", pg.UUID(), primary_key=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        schema="platform",
    )
    op.create_table(
        "event_deliveries",
        sa.Column("seq", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("plugin_id", sa.Text(), nullable=False),
        sa.Column("event_id", pg.UUID(), nullable=False),
        sa.Column("tenant_id", pg.UUID(), nullable=True),
        sa.Column("event", pg.JSONB(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        schema="platform",
    )
    op.create_index(
        "event_deliveries_due",
        "event_deliveries",
        ["plugin_id", "next_attempt_at"],
        schema="platform",
    )
    op.create_index("event_deliveries_tenant", "event_deliveries", ["tenant_id"], schema="platform")
    op.create_table(
        "dead_letters",
        sa.Column("id", pg.UUID(), primary_key=True),
        sa.Column("plugin_id", sa.Text(), nullable=False),
        sa.Column("event_id", pg.UUID(), nullable=False),
        sa.Column("tenant_id", pg.UUID(), nullable=True),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("event", pg.JSONB(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="pending"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'retried', 'discarded')", name="dead_letters_status"
        ),
        schema="platform",
    )
    op.create_index(
        "dead_letters_pending", "dead_letters", ["plugin_id", "created_at"], schema="platform"
    )


def downgrade() -> None:
    op.drop_table("dead_letters", schema="platform")
    op.drop_table("event_deliveries", schema="platform")
    op.drop_table("event_consumers", schema="platform")
    op.drop_table("event_subscriptions", schema="platform")
