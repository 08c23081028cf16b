"""Each event's ``dataschema`` and the per-key clock of ``time`` (ADR 0182, ADR 0183).

``outbox.dataschema`` is the path of the event's schema under the core API
(``/v1/events/schemas/<type>/<version>``); the relay makes it absolute. A plugin's row gets it
from the manifest of the version installed in the row's tenant, here, in the database: the
plugin's publish function cannot name another schema. ``outbox_clocks`` keeps the last ``time``
the relay stamped per key (tenant), so that ``time`` never goes back in delivery order.

Revision ID: e0005
Revises: e0004
"""

from alembic import op

revision = "e0005"
down_revision = "e0004"
branch_labels = None
depends_on = "g0001"

PLUGIN_DATASCHEMA = """CREATE FUNCTION platform.outbox_plugin_dataschema() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE version int;
BEGIN
  SELECT coalesce((e->>'schema_version')::int, 1) INTO version
    FROM platform.plugin_installations i
    JOIN platform.plugin_versions v ON v.plugin_id = i.plugin_id AND v.version = i.version
    CROSS JOIN LATERAL jsonb_array_elements(coalesce(v.manifest->'events'->'emits', '[]')) e
   WHERE i.tenant_id = NEW.tenant_id AND i.plugin_id = substr(NEW.source, 10)
     AND e->>'type' = NEW.type AND jsonb_typeof(e->'data_schema') = 'object';
  NEW.dataschema := CASE WHEN version IS NULL THEN NULL
    ELSE '/v1/events/schemas/' || NEW.type || '/' || version END;
  RETURN NEW;
END $fn$"""


def upgrade() -> None:
    op.execute("ALTER TABLE platform.outbox ADD COLUMN dataschema text")
    op.execute(
        "CREATE TABLE platform.outbox_clocks (key uuid PRIMARY KEY, time timestamptz NOT NULL)"
    )
    op.execute(PLUGIN_DATASCHEMA)
    op.execute(
        "CREATE TRIGGER outbox_plugin_dataschema BEFORE INSERT ON platform.outbox FOR EACH ROW"
        " WHEN (starts_with(NEW.source, '/plugins/'))"
        " EXECUTE FUNCTION platform.outbox_plugin_dataschema()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS outbox_plugin_dataschema ON platform.outbox")
    op.execute("DROP FUNCTION IF EXISTS platform.outbox_plugin_dataschema()")
    op.execute("DROP TABLE IF EXISTS platform.outbox_clocks")
    op.execute("ALTER TABLE platform.outbox DROP COLUMN IF EXISTS dataschema")
