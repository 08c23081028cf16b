"""Storage: bytes and objects per bucket, with per-tenant quota overrides.

Revision ID: s0001
Revises: p0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "s0001"
down_revision = "p0001"
branch_labels = ("storage",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "storage_usage",
        sa.Column("bucket", sa.Text(), primary_key=True),
        sa.Column("tenant_id", pg.UUID(), nullable=True, unique=True),
        sa.Column("bytes_used", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("objects", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("quota_bytes", sa.BigInteger(), nullable=True),
        sa.Column("max_object_bytes", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.CheckConstraint("bytes_used >= 0 AND objects >= 0", name="storage_usage_non_negative"),
        schema="platform",
    )


def downgrade() -> None:
    op.drop_table("storage_usage", schema="platform")
