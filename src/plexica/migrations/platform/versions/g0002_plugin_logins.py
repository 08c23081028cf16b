"""One database login per plugin (ADR 0076).

Revision ID: g0002
Revises: g0001
"""

import sqlalchemy as sa
from alembic import op

revision = "g0002"
down_revision = "g0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "plugin_logins",
        sa.Column("plugin_id", sa.Text(), primary_key=True),
        sa.Column("role_name", sa.Text(), nullable=False, unique=True),
        sa.Column("password", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        schema="platform",
    )


def downgrade() -> None:
    op.drop_table("plugin_logins", schema="platform")
