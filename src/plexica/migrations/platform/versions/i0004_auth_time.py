"""Identity: when the user signed in, kept with codes and refresh tokens (OIDC ``auth_time``).

A refreshed ID token must carry the original authentication's ``auth_time`` (OIDC Core §12.2).
Nullable: rows written before this revision fall back to the time of their own issue.

Revision ID: i0004
Revises: i0003
"""

import sqlalchemy as sa
from alembic import op

revision = "i0004"
down_revision = "i0003"
branch_labels = None
depends_on = None

S = "platform"


def upgrade() -> None:
    for table in ("auth_codes", "refresh_tokens"):
        op.add_column(
            table, sa.Column("auth_time", sa.DateTime(timezone=True), nullable=True), schema=S
        )


def downgrade() -> None:
    for table in ("auth_codes", "refresh_tokens"):
        op.drop_column(table, "auth_time", schema=S)
