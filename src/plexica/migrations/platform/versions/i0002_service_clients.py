"""Identity: the registry of service clients (plugins' and scripts' service tokens).

Revision ID: i0002
Revises: i0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "i0002"
down_revision = "i0001"
branch_labels = None
depends_on = None

S = "platform"


def upgrade() -> None:
    op.create_table(
        "service_clients",
        sa.Column("realm", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("tenant_id", pg.UUID(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("roles", pg.ARRAY(sa.Text()), nullable=False, server_default="{}"),
        sa.Column("state", sa.Text(), nullable=False),
        # Tokens the client got before this second (epoch, its `iat`) are refused.
        sa.Column("revoked_before", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("realm", "client_id"),
        sa.CheckConstraint(
            "state IN ('active', 'disabled', 'revoked')", name="service_clients_state"
        ),
        schema=S,
    )
    op.create_index(
        "service_clients_revoked_before", "service_clients", ["revoked_before"], schema=S
    )


def downgrade() -> None:
    op.drop_table("service_clients", schema=S)
