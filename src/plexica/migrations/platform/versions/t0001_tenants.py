"""Tenants, their state history and their provisioning/deletion steps.

Revision ID: t0001
Revises: p0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "t0001"
down_revision = "p0001"
branch_labels = ("tenants",)
depends_on = None

STATES = "'provisioning','active','suspended','pending_deletion','deleted','failed'"


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", pg.UUID(), primary_key=True),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("admin_email", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("schema_version", sa.Text(), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(f"state IN ({STATES})", name="tenants_state_valid"),
        schema="platform",
    )
    # A deleted tenant keeps its row for the record but gives its slug back.
    op.create_index(
        "tenants_slug_live",
        "tenants",
        ["slug"],
        unique=True,
        schema="platform",
        postgresql_where=sa.text("state <> 'deleted'"),
    )
    op.create_index("tenants_state_slug", "tenants", ["state", "slug"], schema="platform")
    op.create_table(
        "tenant_state_history",
        sa.Column("seq", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "tenant_id",
            pg.UUID(),
            sa.ForeignKey("platform.tenants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("from_state", sa.Text(), nullable=True),
        sa.Column("to_state", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        schema="platform",
    )
    op.create_index(
        "tenant_state_history_tenant", "tenant_state_history", ["tenant_id"], schema="platform"
    )
    op.create_table(
        "tenant_steps",
        sa.Column(
            "tenant_id",
            pg.UUID(),
            sa.ForeignKey("platform.tenants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("phase", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "phase", "name"),
        sa.CheckConstraint("phase IN ('provision','delete')", name="tenant_steps_phase_valid"),
        schema="platform",
    )


def downgrade() -> None:
    op.drop_table("tenant_steps", schema="platform")
    op.drop_table("tenant_state_history", schema="platform")
    op.drop_table("tenants", schema="platform")
