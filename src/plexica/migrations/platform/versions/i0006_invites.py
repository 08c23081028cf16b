"""Identity: invitations by e-mail (ADR 0225).

``platform.invites``: one row per invited user; the link's token is stored only as its SHA-256,
is single-use (``accepted_at``), expires (``expires_at``) and can be revoked. Expand only: a new
table.

Revision ID: i0006
Revises: i0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "i0006"
down_revision = "i0005"
branch_labels = None
depends_on = None

S = "platform"


def upgrade() -> None:
    op.create_table(
        "invites",
        sa.Column("id", pg.UUID(), primary_key=True),
        sa.Column("tenant_id", pg.UUID(), nullable=True),
        sa.Column("realm", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("roles", pg.ARRAY(sa.Text()), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False, unique=True),
        sa.Column("invited_by", sa.Text(), nullable=False),
        sa.Column("sent_count", sa.Integer(), nullable=False, server_default="1"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        schema=S,
    )
    op.create_index("invites_by_realm", "invites", ["realm", "created_at"], schema=S)


def downgrade() -> None:
    op.drop_table("invites", schema=S)
