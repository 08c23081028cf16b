"""Feature flags and their change history.

Revision ID: f0001
Revises: p0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "f0001"
down_revision = "p0001"
branch_labels = ("flags",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flags",
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("definition", pg.JSONB(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        schema="platform",
    )
    op.create_table(
        "flag_changes",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("flag_key", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("before", pg.JSONB(), nullable=True),
        sa.Column("after", pg.JSONB(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema="platform",
    )
    op.create_index("flag_changes_by_flag", "flag_changes", ["flag_key", "id"], schema="platform")


def downgrade() -> None:
    op.drop_table("flag_changes", schema="platform")
    op.drop_table("flags", schema="platform")
