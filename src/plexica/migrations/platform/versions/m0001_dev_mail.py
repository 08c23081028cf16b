"""Mail: the dev mailbox (ADR 0225), what the platform would have sent when
``PLEXICA_SMTP_URL`` is unset (`plexica mail list`). Expand only: a new table.

Revision ID: m0001
Revises: p0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "m0001"
down_revision = "p0001"
branch_labels = ("mail",)
depends_on = None

S = "platform"


def upgrade() -> None:
    op.create_table(
        "dev_mail",
        sa.Column("id", pg.UUID(), primary_key=True),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=S,
    )
    op.create_index("dev_mail_by_time", "dev_mail", ["created_at"], schema=S)


def downgrade() -> None:
    op.drop_table("dev_mail", schema=S)
