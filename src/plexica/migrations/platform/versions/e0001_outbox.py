"""Transactional outbox.

Revision ID: e0001
Revises: p0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "e0001"
down_revision = "p0001"
branch_labels = ("events",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("id", pg.UUID(), nullable=False, unique=True),
        sa.Column("tenant_id", pg.UUID(), nullable=True),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", pg.JSONB(), nullable=False),
        sa.Column("traceparent", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        schema="platform",
    )
    op.create_index(
        "outbox_pending",
        "outbox",
        ["seq"],
        schema="platform",
        postgresql_where=sa.text("published_at IS NULL"),
    )

    # Replay and tenant purge read a tenant's events by type.
    op.create_index("outbox_tenant_type", "outbox", ["tenant_id", "type", "seq"], schema="platform")


def downgrade() -> None:
    op.drop_table("outbox", schema="platform")
