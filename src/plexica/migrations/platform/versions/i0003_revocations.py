"""Identity: the revocation store (ADR 0115) and the plugins' window on it.

``platform.revocations`` holds what token verification refuses: per (realm, subject) and per
(realm, client) cut-offs ("issued before ``before`` is refused"), revoked sign-in sessions
(``sid``) and suspended realms. Every change wakes the listeners of channel
``plexica_revocations`` (the payload says nothing: readers always read the table).

Revision ID: i0003
Revises: i0002
"""

import sqlalchemy as sa
from alembic import op

revision = "i0003"
down_revision = "i0002"
branch_labels = None
depends_on = "e0003"  # schema plugin_api

S = "platform"

NOTIFY = """CREATE FUNCTION platform.revocations_notify() RETURNS trigger LANGUAGE plpgsql
AS $fn$ BEGIN PERFORM pg_notify('plexica_revocations', ''); RETURN NULL; END $fn$"""

# Only what verification needs, of the realms of tenants where the calling plugin is installed.
PLUGIN_FUNCTION = """CREATE FUNCTION plugin_api.revocations()
RETURNS TABLE (realm text, kind text, key text, before bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
  WITH me AS (SELECT plugin_api.plugin_id() AS id)
  SELECT r.realm, r.kind, r.key, r.before FROM platform.revocations r
  JOIN platform.realms m ON m.name = r.realm, me
  WHERE (r.until IS NULL OR r.until > now())
    AND EXISTS (SELECT 1 FROM platform.plugin_installations i
      WHERE i.tenant_id = m.tenant_id AND i.plugin_id = me.id)
$fn$"""


def upgrade() -> None:
    op.create_table(
        "revocations",
        sa.Column("realm", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False, server_default=""),
        # subject, client: tokens whose `iat` is before this second (epoch) are refused;
        # session, realm: when it was recorded.
        sa.Column("before", sa.BigInteger(), nullable=False),
        # When the row may go (every token it refuses has expired); NULL: kept until removed.
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("realm", "kind", "key"),
        sa.CheckConstraint(
            "kind IN ('subject', 'client', 'session', 'realm')", name="revocations_kind"
        ),
        schema=S,
    )
    op.create_index("revocations_until", "revocations", ["until"], schema=S)
    op.execute(NOTIFY)
    op.execute(
        "CREATE TRIGGER revocations_notify AFTER INSERT OR UPDATE OR DELETE"
        " ON platform.revocations FOR EACH STATEMENT EXECUTE FUNCTION platform.revocations_notify()"
    )
    # Service clients' cut-offs move here (ADR 0016's column stays for display).
    op.execute(
        "INSERT INTO platform.revocations (realm, kind, key, before, until)"
        " SELECT realm, 'client', client_id, revoked_before, now() + interval '1 hour'"
        " FROM platform.service_clients WHERE revoked_before > extract(epoch FROM now()) - 3600"
    )
    op.execute(PLUGIN_FUNCTION)
    op.execute("REVOKE ALL ON FUNCTION plugin_api.revocations() FROM PUBLIC")
    op.execute(
        """DO $do$ DECLARE r text; BEGIN
          FOR r IN SELECT l.role_name FROM platform.plugin_logins l
              JOIN pg_roles g ON g.rolname = l.role_name LOOP
            EXECUTE format('GRANT EXECUTE ON FUNCTION plugin_api.revocations() TO %I', r);
          END LOOP;
        END $do$"""
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION plugin_api.revocations()")
    op.drop_table("revocations", schema=S)
    op.execute("DROP FUNCTION platform.revocations_notify()")
