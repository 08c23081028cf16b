"""Audit log: the request id of the request that wrote each entry (the ``X-Request-ID`` the
caller saw), next to its trace id. Expand only: a nullable column; older rows have none.

Revision ID: a0002
Revises: a0001
"""

import sqlalchemy as sa
from alembic import op

revision = "a0002"
down_revision = "a0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("request_id", sa.Text(), nullable=True), schema="platform")


def downgrade() -> None:
    op.drop_column("audit_log", "request_id", schema="platform")
