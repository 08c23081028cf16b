"""Audit log.

Revision ID: a0001
Revises: p0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "a0001"
down_revision = "p0001"
branch_labels = ("audit",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("id", pg.UUID(), nullable=False, unique=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("tenant_id", pg.UUID(), nullable=True),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("before", pg.JSONB(), nullable=True),
        sa.Column("after", pg.JSONB(), nullable=True),
        sa.Column("trace_id", sa.Text(), nullable=True),
        schema="platform",
    )
    op.create_index("audit_log_tenant", "audit_log", ["tenant_id", "seq"], schema="platform")


def downgrade() -> None:
    op.drop_table("audit_log", schema="platform")
