"""Identity: support access in the built-in provider (ADR 0240).

``platform.support_grants``: a tenant admin's permission for platform operators to act as the
tenant's users, until ``expires_at`` or an early revocation. ``platform.support_sessions``: each
session an operator started under a grant; its id is the ``sid`` of its tokens, so that ending
it (or revoking the grant) refuses them through the revocation store. Expand only: new tables.

Revision ID: i0008
Revises: i0007
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "i0008"
down_revision = "i0007"
branch_labels = None
depends_on = None

S = "platform"


def _at(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "support_grants",
        sa.Column("id", pg.UUID(), primary_key=True),
        sa.Column("tenant_id", pg.UUID(), nullable=False),
        sa.Column("realm", sa.Text(), nullable=False),
        sa.Column("granted_by", sa.Text(), nullable=False),
        _at("granted_at"),
        _at("expires_at"),
        sa.Column("revoked_by", sa.Text(), nullable=True),
        _at("revoked_at", nullable=True),
        schema=S,
    )
    op.create_index("support_grants_by_tenant", "support_grants", ["tenant_id"], schema=S)
    op.create_table(
        "support_sessions",
        sa.Column("id", pg.UUID(), primary_key=True),
        sa.Column(
            "grant_id",
            pg.UUID(),
            sa.ForeignKey(f"{S}.support_grants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("realm", sa.Text(), nullable=False),
        sa.Column("user_id", pg.UUID(), nullable=False),
        sa.Column("user_email", sa.Text(), nullable=False),
        sa.Column("operator_subject", sa.Text(), nullable=False),
        sa.Column("operator_email", sa.Text(), nullable=False),
        _at("started_at"),
        _at("expires_at"),
        _at("ended_at", nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        schema=S,
    )
    op.create_index("support_sessions_by_grant", "support_sessions", ["grant_id"], schema=S)


def downgrade() -> None:
    op.drop_table("support_sessions", schema=S)
    op.drop_table("support_grants", schema=S)
