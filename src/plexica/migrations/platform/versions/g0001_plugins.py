"""Plugin catalog and per-tenant installations.

Revision ID: g0001
Revises: p0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "g0001"
down_revision = "p0001"
branch_labels = ("plugins",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "plugin_versions",
        sa.Column("plugin_id", sa.Text(), primary_key=True),
        sa.Column("version", sa.Text(), primary_key=True),
        sa.Column("manifest", pg.JSONB(), nullable=False),
        sa.Column("migrations", pg.JSONB(), nullable=False, server_default="[]"),
        sa.Column("status", sa.Text(), nullable=False, server_default="registered"),
        sa.Column("registered_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deprecated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('registered', 'published', 'deprecated')", name="plugin_version_status"
        ),
        schema="platform",
    )
    op.create_table(
        "plugin_installations",
        sa.Column("tenant_id", pg.UUID(), primary_key=True),
        sa.Column("plugin_id", sa.Text(), primary_key=True),
        sa.Column("tenant_slug", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("settings", pg.JSONB(), nullable=False, server_default="{}"),
        sa.Column("applied_migrations", pg.JSONB(), nullable=False, server_default="[]"),
        sa.Column("db_role", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("retain_until", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('installing', 'active', 'disabled', 'uninstalled', 'failed')",
            name="plugin_installation_status",
        ),
        schema="platform",
    )
    op.create_index(
        "plugin_installations_retention",
        "plugin_installations",
        ["retain_until"],
        schema="platform",
        postgresql_where=sa.text("status = 'uninstalled'"),
    )


def downgrade() -> None:
    op.drop_table("plugin_installations", schema="platform")
    op.drop_table("plugin_versions", schema="platform")
