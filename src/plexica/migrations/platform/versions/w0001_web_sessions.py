"""Web shell: server-side browser sessions (ADR 0120).

Revision ID: w0001
Revises: p0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "w0001"
down_revision = "p0001"
branch_labels = ("web",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", pg.UUID(), primary_key=True),
        # HMAC of the cookie's random id: the id itself is never stored.
        sa.Column("token_hash", sa.LargeBinary(), nullable=False, unique=True),
        sa.Column("realm", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("tokens", sa.LargeBinary(), nullable=False),
        sa.Column("access_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("csrf", sa.Text(), nullable=False),
        sa.Column("user_agent", sa.Text(), nullable=False, server_default=""),
        sa.Column("ip", sa.Text(), nullable=False, server_default=""),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "last_seen_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        schema="platform",
    )
    op.create_index("web_sessions_by_user", "web_sessions", ["realm", "subject"], schema="platform")
    op.create_index("web_sessions_by_expiry", "web_sessions", ["expires_at"], schema="platform")


def downgrade() -> None:
    op.drop_table("web_sessions", schema="platform")
