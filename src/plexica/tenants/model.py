"""The tenant schema at the head of the tenant migration tree, as SQLAlchemy metadata.

Provisioning creates a new schema from this and stamps the head revision, instead of replaying
the history. ``tests/tenants/test_template.py`` proves it equals what the migrations build.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

TENANT_METADATA = sa.MetaData()

settings = sa.Table(
    "settings",
    TENANT_METADATA,
    sa.Column("key", sa.Text(), primary_key=True),
    sa.Column("value", pg.JSONB(), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
