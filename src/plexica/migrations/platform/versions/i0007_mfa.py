"""Identity: two-step sign-in with TOTP in the built-in provider (ADR 0232).

``platform.user_totp``: a user's authenticator secret (sealed with the key ring), confirmed once
a first code matched, and the last time step accepted (a code is good once). ``platform.
user_recovery_codes``: SHA-256 of single-use recovery codes. ``platform.mfa_challenges``: a
password accepted and a code awaited (``verify``) or an authenticator to enrol (``enrol``, when
the realm's ``mfa_required`` says so), by the SHA-256 of the form's token, for five minutes.
Expand only: new tables and a column with a default.

Revision ID: i0007
Revises: i0006
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "i0007"
down_revision = "i0006"
branch_labels = None
depends_on = None

S = "platform"


def _user() -> sa.Column[Any]:
    return sa.Column(
        "user_id", pg.UUID(), sa.ForeignKey(f"{S}.users.id", ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "user_totp",
        _user(),
        sa.Column("sealed_secret", sa.Text(), nullable=False),
        sa.Column("sealed_with", sa.Text(), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_step", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("user_id"),
        schema=S,
    )
    op.create_table(
        "user_recovery_codes",
        _user(),
        sa.Column("code_hash", sa.Text(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("user_id", "code_hash"),
        schema=S,
    )
    op.create_table(
        "mfa_challenges",
        sa.Column("token_hash", sa.Text(), primary_key=True),
        sa.Column("realm", sa.Text(), nullable=False),
        _user(),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("passed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        schema=S,
    )
    op.create_index("mfa_challenges_by_user", "mfa_challenges", ["user_id"], schema=S)
    op.add_column(
        "realms",
        sa.Column("mfa_required", sa.Boolean(), nullable=False, server_default=sa.false()),
        schema=S,
    )


def downgrade() -> None:
    op.drop_column("realms", "mfa_required", schema=S)
    for table in ("mfa_challenges", "user_recovery_codes", "user_totp"):
        op.drop_table(table, schema=S)
