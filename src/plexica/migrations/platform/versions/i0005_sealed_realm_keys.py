"""Identity: realm private keys sealed at rest; rotation with pre-publication and retirement.

Expand only (ADR 0043, 0150). The plaintext ``private_pem`` becomes nullable: the core seals
existing keys at start-up with ``PLEXICA_KEY_ENCRYPTION_KEY`` and clears it, which this migration
cannot do (it does not get the key, and should not). ``next`` is a key published in the JWKS
before it signs; a ``previous`` key is deleted at ``retire_at``.

Revision ID: i0005
Revises: i0004
"""

import sqlalchemy as sa
from alembic import op

revision = "i0005"
down_revision = "i0004"
branch_labels = None
depends_on = None

S = "platform"


def upgrade() -> None:
    op.alter_column("realm_keys", "private_pem", nullable=True, schema=S)
    op.add_column("realm_keys", sa.Column("sealed_key", sa.Text(), nullable=True), schema=S)
    op.add_column("realm_keys", sa.Column("sealed_with", sa.Text(), nullable=True), schema=S)
    op.add_column("realm_keys", sa.Column("activates_at", sa.DateTime(timezone=True)), schema=S)
    op.add_column("realm_keys", sa.Column("retire_at", sa.DateTime(timezone=True)), schema=S)
    op.drop_constraint("realm_keys_status", "realm_keys", schema=S, type_="check")
    op.create_check_constraint(
        "realm_keys_status", "realm_keys", "status IN ('active', 'previous', 'next')", schema=S
    )
    op.create_check_constraint(
        "realm_keys_material",
        "realm_keys",
        "private_pem IS NOT NULL OR sealed_key IS NOT NULL",
        schema=S,
    )
    # Keys demoted before this release carry no date: they stay published for one more access
    # token lifetime and margin from now, then retire like any other.
    op.execute(
        "UPDATE platform.realm_keys SET retire_at = now() + interval '10 minutes'"
        " WHERE status = 'previous'"
    )


def downgrade() -> None:
    op.drop_constraint("realm_keys_material", "realm_keys", schema=S, type_="check")
    op.drop_constraint("realm_keys_status", "realm_keys", schema=S, type_="check")
    op.execute("DELETE FROM platform.realm_keys WHERE status = 'next' OR private_pem IS NULL")
    op.create_check_constraint(
        "realm_keys_status", "realm_keys", "status IN ('active', 'previous')", schema=S
    )
    for column in ("retire_at", "activates_at", "sealed_with", "sealed_key"):
        op.drop_column("realm_keys", column, schema=S)
    op.alter_column("realm_keys", "private_pem", nullable=False, schema=S)
