"""Event delivery for a plugin process logged in as the plugin (ADR 0078).

Schema ``plugin_api`` holds the only functions a plugin login may execute: SECURITY DEFINER,
owned by the platform, each acting on rows of the plugin whose login is ``session_user``.

Revision ID: e0003
Revises: e0002
"""

from alembic import op

revision = "e0003"
down_revision = "e0002"
branch_labels = None
depends_on = "g0002"

FUNCTIONS = [
    # The calling plugin: from the login that opened the session, never from an argument.
    """CREATE FUNCTION plugin_api.plugin_id() RETURNS text LANGUAGE plpgsql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $fn$ DECLARE me text; BEGIN
      SELECT l.plugin_id INTO me FROM platform.plugin_logins l WHERE l.role_name = session_user;
      IF me IS NULL THEN
        RAISE EXCEPTION 'not a plugin login' USING ERRCODE = '42501';
      END IF;
      RETURN me;
    END $fn$""",
    # A new row the plugin writes must be an event of a tenant it is installed in (or a record
    # that was no event at all, which has no tenant).
    """CREATE FUNCTION platform.plugin_api_checked_event(me text, ev jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
    AS $fn$ DECLARE tenant uuid; BEGIN
      IF jsonb_typeof(ev) IS DISTINCT FROM 'object' OR octet_length(ev::text) > 8388608
         OR jsonb_typeof(ev -> 'id') IS DISTINCT FROM 'string'
         OR jsonb_typeof(ev -> 'type') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'not an event (object with id and type, at most 8 MiB)'
          USING ERRCODE = '22023';
      END IF;
      PERFORM (ev ->> 'id')::uuid;
      tenant := (ev ->> 'tenant_id')::uuid;
      IF tenant IS NOT NULL AND NOT EXISTS (SELECT 1 FROM platform.event_consumers c
          WHERE c.plugin_id = me AND c.tenant_id = tenant) THEN
        RAISE EXCEPTION 'plugin is not installed in that tenant' USING ERRCODE = '42501';
      END IF;
      RETURN ev;
    END $fn$""",
    """CREATE FUNCTION plugin_api.event_consumer_active(tenant uuid) RETURNS boolean
    LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
      SELECT coalesce((SELECT c.active FROM platform.event_consumers c
        WHERE c.plugin_id = plugin_api.plugin_id() AND c.tenant_id = tenant), false)
    $fn$""",
    """CREATE FUNCTION plugin_api.event_claim_deliveries(
      max_rows integer, lease_seconds double precision)
    RETURNS TABLE (seq bigint, event jsonb, reason text, attempts integer)
    LANGUAGE sql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
      WITH me AS (SELECT plugin_api.plugin_id() AS id)
      UPDATE platform.event_deliveries d
      SET lease_until = now() + make_interval(secs => least(greatest(lease_seconds, 1), 3600))
      FROM (SELECT q.seq FROM platform.event_deliveries q, me
        WHERE q.plugin_id = me.id AND q.next_attempt_at <= now()
        AND (q.lease_until IS NULL OR q.lease_until < now())
        ORDER BY q.seq LIMIT least(greatest(max_rows, 0), 1000) FOR UPDATE SKIP LOCKED) c
      WHERE d.seq = c.seq
      RETURNING d.seq, d.event, d.reason, d.attempts
    $fn$""",
    """CREATE FUNCTION plugin_api.event_delivered(queued bigint) RETURNS boolean
    LANGUAGE sql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
      WITH gone AS (DELETE FROM platform.event_deliveries d
        WHERE d.seq = queued AND d.plugin_id = plugin_api.plugin_id() RETURNING 1)
      SELECT count(*) > 0 FROM gone
    $fn$""",
    # A failed delivery comes again later: a queued row is rescheduled, an event handled
    # straight from the broker is queued.
    """CREATE FUNCTION plugin_api.event_retry(ev jsonb, tries integer,
      delay_seconds double precision, err text, queued bigint DEFAULT NULL) RETURNS boolean
    LANGUAGE plpgsql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
    DECLARE me text := plugin_api.plugin_id();
      due timestamptz := now() + make_interval(secs => least(greatest(delay_seconds, 0), 86400));
    BEGIN
      IF queued IS NOT NULL THEN
        UPDATE platform.event_deliveries d SET attempts = greatest(tries, 0),
          last_error = left(err, 2000), lease_until = NULL, next_attempt_at = due
        WHERE d.seq = queued AND d.plugin_id = me;
        RETURN FOUND;
      END IF;
      ev := platform.plugin_api_checked_event(me, ev);
      INSERT INTO platform.event_deliveries (plugin_id, event_id, tenant_id, event, reason,
        attempts, last_error, next_attempt_at)
      VALUES (me, (ev ->> 'id')::uuid, (ev ->> 'tenant_id')::uuid, ev, 'retry',
        greatest(tries, 0), left(err, 2000), due);
      RETURN true;
    END $fn$""",
    """CREATE FUNCTION plugin_api.event_dead_letter(ev jsonb, err text, tries integer,
      queued bigint DEFAULT NULL) RETURNS uuid
    LANGUAGE plpgsql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
    DECLARE me text := plugin_api.plugin_id(); new_id uuid := uuidv7();
    BEGIN
      ev := platform.plugin_api_checked_event(me, ev);
      INSERT INTO platform.dead_letters (id, plugin_id, event_id, tenant_id, type, event, error,
        attempts)
      VALUES (new_id, me, (ev ->> 'id')::uuid, (ev ->> 'tenant_id')::uuid, ev ->> 'type', ev,
        left(err, 2000), greatest(tries, 0));
      IF queued IS NOT NULL THEN
        DELETE FROM platform.event_deliveries d WHERE d.seq = queued AND d.plugin_id = me;
      END IF;
      RETURN new_id;
    END $fn$""",
]

SIGNATURES = [
    "plugin_api.plugin_id()",
    "platform.plugin_api_checked_event(text, jsonb)",
    "plugin_api.event_consumer_active(uuid)",
    "plugin_api.event_claim_deliveries(integer, double precision)",
    "plugin_api.event_delivered(bigint)",
    "plugin_api.event_retry(jsonb, integer, double precision, text, bigint)",
    "plugin_api.event_dead_letter(jsonb, text, integer, bigint)",
]


def upgrade() -> None:
    op.execute("CREATE SCHEMA plugin_api")
    op.execute("REVOKE ALL ON SCHEMA plugin_api FROM PUBLIC")
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA plugin_api REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC"
    )
    for sql in FUNCTIONS:
        op.execute(sql)
    for signature in SIGNATURES:
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    # Logins made before this revision; later ones are granted when they are created.
    op.execute(
        """DO $do$ DECLARE r text; BEGIN
          FOR r IN SELECT l.role_name FROM platform.plugin_logins l
              JOIN pg_roles g ON g.rolname = l.role_name LOOP
            EXECUTE format('GRANT USAGE ON SCHEMA plugin_api TO %I', r);
            EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA plugin_api TO %I', r);
          END LOOP;
        END $do$"""
    )


def downgrade() -> None:
    op.execute("DROP SCHEMA plugin_api CASCADE")
    op.execute("DROP FUNCTION platform.plugin_api_checked_event(text, jsonb)")
