"""Identity: realms, signing keys, users, clients, codes, refresh tokens, role permissions.

Revision ID: i0001
Revises: p0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "i0001"
down_revision = "p0001"
branch_labels = ("identity",)
depends_on = None

S = "platform"


def _now() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now())


def _realm() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "realm", sa.Text(), sa.ForeignKey(f"{S}.realms.name", ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "realms",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("tenant_id", pg.UUID(), nullable=True, unique=True),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        _now(),
        schema=S,
    )
    op.create_table(
        "realm_keys",
        sa.Column("kid", sa.Text(), primary_key=True),
        _realm(),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("private_pem", sa.Text(), nullable=False),
        sa.Column("public_jwk", pg.JSONB(), nullable=False),
        _now(),
        sa.CheckConstraint("status IN ('active', 'previous')", name="realm_keys_status"),
        schema=S,
    )
    op.create_index(
        "realm_keys_one_active",
        "realm_keys",
        ["realm"],
        unique=True,
        schema=S,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "users",
        sa.Column("id", pg.UUID(), primary_key=True),
        _realm(),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("roles", pg.ARRAY(sa.Text()), nullable=False, server_default="{}"),
        _now(),
        sa.UniqueConstraint("realm", "email", name="users_realm_email"),
        schema=S,
    )
    op.create_table(
        "clients",
        _realm(),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=True),
        sa.Column("redirect_uris", pg.ARRAY(sa.Text()), nullable=False, server_default="{}"),
        sa.Column("roles", pg.ARRAY(sa.Text()), nullable=False, server_default="{}"),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        _now(),
        sa.PrimaryKeyConstraint("realm", "client_id"),
        schema=S,
    )
    op.create_table(
        "auth_codes",
        sa.Column("code_hash", sa.Text(), primary_key=True),
        _realm(),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("user_id", pg.UUID(), sa.ForeignKey(f"{S}.users.id", ondelete="CASCADE")),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("code_challenge", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("nonce", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        schema=S,
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.Text(), primary_key=True),
        _realm(),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("user_id", pg.UUID(), sa.ForeignKey(f"{S}.users.id", ondelete="CASCADE")),
        sa.Column("family", pg.UUID(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        _now(),
        schema=S,
    )
    op.create_index("refresh_tokens_family", "refresh_tokens", ["family"], schema=S)
    op.create_table(
        "role_permissions",
        sa.Column("tenant_id", pg.UUID(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("permission", sa.Text(), nullable=False),
        _now(),
        sa.PrimaryKeyConstraint("tenant_id", "role", "permission"),
        schema=S,
    )


def downgrade() -> None:
    for table in (
        "role_permissions",
        "refresh_tokens",
        "auth_codes",
        "clients",
        "users",
        "realm_keys",
        "realms",
    ):
        op.drop_table(table, schema=S)
