"""The SDK's PluginFiles against the real core: a plugin stays inside its own prefix."""

from __future__ import annotations

import os

import pytest

from plexica_sdk.errors import PlexicaError
from plexica_sdk.storage import PluginFiles
from tests.storage.conftest import Core


async def test_plugin_files_are_confined_to_the_plugin_prefix(core: Core) -> None:
    a = core.tenant()
    token = a.headers["Authorization"].removeprefix("Bearer ")
    crm = PluginFiles("crm", token, client=core.client)
    billing = PluginFiles("billing", token, client=core.client)

    info = await crm.put("deals/42/contract.pdf", b"%PDF-1.7\n" + os.urandom(3000))
    assert info.key == "deals/42/contract.pdf"
    assert info.content_type == "application/pdf"
    await crm.put("notes.txt", b"hello")
    await billing.put("invoices/1.txt", b"invoice")

    # The object really lives under the plugin's prefix in the tenant bucket.
    r = await core.client.get("/v1/files/objects/plugins/crm/notes.txt", headers=a.headers)
    assert r.content == b"hello"

    assert [f.key async for f in crm.list()] == ["deals/42/contract.pdf", "notes.txt"]
    assert [f.key async for f in crm.list("deals/", page_size=1)] == ["deals/42/contract.pdf"]
    assert [f.key async for f in billing.list()] == ["invoices/1.txt"]
    assert await crm.get("notes.txt") == b"hello"
    assert b"".join([c async for c in crm.stream("notes.txt")]) == b"hello"

    for bad in [
        "../billing/invoices/1.txt",
        "/plugins/billing/invoices/1.txt",
        "a/../../x",
        "a\\b",
        "a\x00",
    ]:
        with pytest.raises(PlexicaError) as exc:
            await crm.get(bad)
        assert exc.value.code == "invalid_key"
    with pytest.raises(PlexicaError) as exc:
        await crm.get("invoices/1.txt")
    assert exc.value.status == 404

    signed = await crm.presign("notes.txt", expires_in=60)
    assert signed.method == "GET"
    assert signed.url.startswith("http")
    await crm.delete("notes.txt")
    assert [f.key async for f in crm.list()] == ["deals/42/contract.pdf"]


def test_plugin_id_is_checked() -> None:
    with pytest.raises(ValueError, match="plugin id"):
        PluginFiles("../x", "t", base_url="http://127.0.0.1:1")
