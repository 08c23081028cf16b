"""Feature flags a plugin declares in its manifest become platform flags at registration."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from plexica.kit.db import Database
from tests.plugins.conftest import plugin_doc, register_doc


async def test_declared_flags_are_created_once_and_kept(db: Database) -> None:
    plugin_id = "f" + uuid.uuid4().hex[:8]
    doc = plugin_doc(
        plugin_id,
        feature_flags=[
            {"key": "new_board", "description": "Kanban board", "default": True},
            {"key": f"{plugin_id}.beta_export"},
        ],
    )
    await register_doc(db, doc, [])
    async with db.session() as s:
        rows = await s.execute(
            text("SELECT key, definition FROM platform.flags WHERE key LIKE :p ORDER BY key"),
            {"p": plugin_id + ".%"},
        )
        flags = {r.key: r.definition for r in rows}
    assert set(flags) == {f"{plugin_id}.beta_export", f"{plugin_id}.new_board"}
    assert flags[f"{plugin_id}.new_board"]["default_variant"] == "on"
    assert flags[f"{plugin_id}.beta_export"]["default_variant"] == "off"

    # An operator's change survives the next version's registration.
    async with db.session() as s:
        await s.execute(
            text(
                "UPDATE platform.flags SET definition = jsonb_set(definition, '{enabled}', 'false')"
                " WHERE key = :k"
            ),
            {"k": f"{plugin_id}.new_board"},
        )
    await register_doc(db, plugin_doc(plugin_id, "1.1.0", feature_flags=doc["feature_flags"]), [])
    async with db.session() as s:
        enabled = await s.execute(
            text("SELECT definition->'enabled' FROM platform.flags WHERE key = :k"),
            {"k": f"{plugin_id}.new_board"},
        )
        assert enabled.scalar_one() is False
        audited = await s.execute(
            text("SELECT count(*) FROM platform.audit_log WHERE target LIKE :p"),
            {"p": plugin_id + ".%"},
        )
        assert audited.scalar_one() == 2
