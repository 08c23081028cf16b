"""The version an upgrade is migrating to, while its migration runs on the plugin's own login
(ADR 0110): a crash between the steps leaves it set, and the reconciler finishes the undo.

Revision ID: g0003
Revises: g0002
"""

import sqlalchemy as sa
from alembic import op

revision = "g0003"
down_revision = "g0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Expand only: a nullable column older code ignores.
    op.add_column(
        "plugin_installations",
        sa.Column("pending_version", sa.Text(), nullable=True),
        schema="platform",
    )


def downgrade() -> None:
    op.drop_column("plugin_installations", "pending_version", schema="platform")
