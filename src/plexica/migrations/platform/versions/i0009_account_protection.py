"""Identity: account protection per tenant in the built-in provider (ADR 0243).

``platform.realms`` gains the password policy (``password_min_length``) and the sign-in session
lifetimes (``session_max_hours``, ``session_idle_minutes``); ``platform.refresh_tokens`` gains
``session_expires_at``, the end of its sign-in session fixed when the session starts (NULL for
older chains: they keep the end they had). ``platform.login_failures``: the sign-in throttle's
counters (fixed windows) shared by every replica, used whenever Redis is absent or failing.
Expand only: columns with defaults or nullable, and a new table.

Revision ID: i0009
Revises: i0008
"""

import sqlalchemy as sa
from alembic import op

revision = "i0009"
down_revision = "i0008"
branch_labels = None
depends_on = None

S = "platform"


def upgrade() -> None:
    for name, default in (
        ("password_min_length", "12"),
        ("session_max_hours", "8"),
        ("session_idle_minutes", "480"),
    ):
        op.add_column(
            "realms",
            sa.Column(name, sa.Integer(), nullable=False, server_default=default),
            schema=S,
        )
    op.add_column(
        "refresh_tokens",
        sa.Column("session_expires_at", sa.DateTime(timezone=True), nullable=True),
        schema=S,
    )
    op.create_table(
        "login_failures",
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        schema=S,
    )
    op.create_index("login_failures_by_end", "login_failures", ["window_end"], schema=S)


def downgrade() -> None:
    op.drop_table("login_failures", schema=S)
    op.drop_column("refresh_tokens", "session_expires_at", schema=S)
    for name in ("session_idle_minutes", "session_max_hours", "password_min_length"):
        op.drop_column("realms", name, schema=S)
