"""Identity: a tenant's company sign-in (SSO) in the built-in provider (ADR 0246).

``platform.realm_sso``: the realm's OpenID Connect provider (issuer, client, the client secret
sealed with the key ring, the e-mail domains routed to it, the role of accounts it creates, and
whether those domains must use it). ``platform.sso_logins``: sign-ins on their way through the
company provider, by the SHA-256 of their ``state``, with that of the browser's cookie, for ten
minutes. ``platform.user_sso``: the company account (issuer, subject) each user is linked to.
Expand only: new tables.

Revision ID: i0010
Revises: i0009
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "i0010"
down_revision = "i0009"
branch_labels = None
depends_on = None

S = "platform"


def _realm() -> sa.Column[str]:
    return sa.Column(
        "realm", sa.Text(), sa.ForeignKey(f"{S}.realms.name", ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "realm_sso",
        _realm(),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("sealed_secret", sa.Text(), nullable=False),
        sa.Column("sealed_with", sa.Text(), nullable=False),
        sa.Column("domains", pg.ARRAY(sa.Text()), nullable=False),
        sa.Column("default_role", sa.Text(), nullable=False),
        sa.Column("required", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("realm"),
        schema=S,
    )
    op.create_table(
        "sso_logins",
        sa.Column("state_hash", sa.Text(), primary_key=True),
        _realm(),
        sa.Column("params", pg.JSONB(), nullable=False),
        sa.Column("nonce", sa.Text(), nullable=False),
        sa.Column("verifier", sa.Text(), nullable=False),
        sa.Column("browser_hash", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        schema=S,
    )
    op.create_index("sso_logins_by_expiry", "sso_logins", ["expires_at"], schema=S)
    op.create_table(
        "user_sso",
        sa.Column(
            "user_id",
            pg.UUID(),
            sa.ForeignKey(f"{S}.users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        _realm(),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column(
            "linked_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.UniqueConstraint("realm", "issuer", "subject"),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("user_sso", schema=S)
    op.drop_table("sso_logins", schema=S)
    op.drop_table("realm_sso", schema=S)
