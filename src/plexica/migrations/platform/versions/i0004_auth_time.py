"""Identity: when the user signed in, kept with codes and refresh tokens (OIDC ``auth_time``).

A refreshed ID token must carry the original authentication's ``auth_time`` (OIDC Core §12.2).
Nullable: rows written before this revision fall back to the time of their own issue.

Revision ID: i0004
Revises: i0002
"""

import sqlalchemy as sa
from alembic import op

# i0003 is the revocation store of issue 16, written beside this one: once both are in, this
# revision follows it (until then both branch from i0002 and `upgrade heads` applies both).
revision = "i0004"
down_revision = "i0002"
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
