"""``plexica plugin new <slug>``: a working plugin with a manifest, a migration, an app, an HTML
fragment and a test that runs it against a real local Plexica through the SDK test kit."""

from __future__ import annotations

import re
from pathlib import Path

from plexica_sdk.manifest import PLUGIN_ID_RE


class ScaffoldError(ValueError):
    pass


def _files(slug: str) -> dict[str, str]:
    pkg = f"plexica_{slug}"
    title = slug.capitalize()
    return {
        "pyproject.toml": f"""[project]
name = "plexica-plugin-{slug}"
version = "0.1.0"
description = "{title}: a Plexica plugin."
requires-python = ">=3.11"
dependencies = ["plexica-sdk"]

[project.entry-points."plexica.plugins"]
{slug} = "{pkg}.app:create_app"

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[tool.hatch.build.targets.wheel]
packages = ["src/{pkg}"]

[tool.hatch.build.targets.wheel.force-include]
"plexica-plugin.yaml" = "{pkg}/plexica-plugin.yaml"
"migrations" = "{pkg}/migrations"

[tool.pytest.ini_options]
pythonpath = ["src"]
""",
        "plexica-plugin.yaml": f"""manifest_version: 1
id: {slug}
name: {title}
version: 0.1.0
description: "{title} items."
publisher: "You"
core: ">=0.1.0 <1.0.0"
permissions:
  - {{key: "{slug}:item:read", description: "Read items", default_roles: [tenant_admin, member]}}
  - {{key: "{slug}:item:write", description: "Create items", default_roles: [tenant_admin, member]}}
ui:
  pages:
    - {{id: items, title: "{title}", path: /ui/items, permission: "{slug}:item:read"}}
migrations: migrations
settings_schema: {{type: object}}
""",
        "migrations/0001_init.sql": f"""CREATE TABLE {slug}_items (
    id uuid PRIMARY KEY DEFAULT uuidv7(),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
""",
        f"src/{pkg}/__init__.py": f'"""The {slug} plugin."""\n',
        f"src/{pkg}/app.py": f'''"""The {slug} plugin's app (entry point ``plexica.plugins: {slug}``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy import text

from plexica_sdk.app import FragmentsDep, PluginConfig, PluginContext, create_plugin_app, require
from plexica_sdk.manifest import MANIFEST_FILE, load_manifest

HERE = Path(__file__).resolve().parent
ROOT = HERE if (HERE / MANIFEST_FILE).exists() else HERE.parents[1]

Read = Annotated[PluginContext, Depends(require("{slug}:item:read"))]
Write = Annotated[PluginContext, Depends(require("{slug}:item:write"))]


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class Item(ItemIn):
    id: str


def router() -> APIRouter:
    r = APIRouter()

    @r.get("/v1/items")
    async def items(ctx: Read) -> list[Item]:
        rows = await ctx.db.execute(text("SELECT id::text, name FROM {slug}_items ORDER BY id"))
        return [Item(id=row.id, name=row.name) for row in rows]

    @r.post("/v1/items", status_code=201)
    async def create(body: ItemIn, ctx: Write) -> Item:
        row = await ctx.db.execute(
            text(
                "INSERT INTO {slug}_items (name, created_by)"
                " VALUES (:n, :u) RETURNING id::text"
            ),
            {{"n": body.name, "u": ctx.user_id}},
        )
        return Item(id=row.scalar_one(), name=body.name)

    @r.get("/ui/items", response_class=HTMLResponse)
    async def page(ctx: Read, ui: FragmentsDep) -> HTMLResponse:
        rows = await ctx.db.execute(text("SELECT name FROM {slug}_items ORDER BY id"))
        return ui.render("items.html", items=[row.name for row in rows])

    return r


def create_app(config: PluginConfig | None = None):  # type: ignore[no-untyped-def]
    manifest = load_manifest(ROOT / MANIFEST_FILE)
    return create_plugin_app(
        manifest, routers=[router()], config=config, templates=HERE / "templates"
    )
''',
        f"src/{pkg}/templates/items.html": """<ul class="items">
{% for name in items %}<li>{{ name }}</li>{% else %}<li>No items yet.</li>{% endfor %}
</ul>
""",
        f"tests/test_{slug}.py": f'''"""Runs the plugin against a real local Plexica and PostgreSQL (the SDK test kit)."""

from pathlib import Path

from plexica_sdk.testing import PluginTestKit
from {pkg}.app import create_app

ROOT = Path(__file__).resolve().parents[1]


def test_items_per_tenant() -> None:
    with PluginTestKit(ROOT, create_app) as kit:
        acme = kit.tenant("acme")
        other = kit.tenant("other", install=False)
        with kit.client(acme, roles=["member"]) as http:
            assert http.post("/v1/items", json={{"name": "first"}}).status_code == 201
            assert [i["name"] for i in http.get("/v1/items").json()] == ["first"]
            assert "first" in http.get("/ui/items").text
        with kit.client(other, roles=["member"]) as http:
            assert http.get("/v1/items").status_code == 404
''',
    }


def scaffold(slug: str, target: Path) -> Path:
    if not re.match(PLUGIN_ID_RE, slug):
        raise ScaffoldError(
            f"plugin id {slug!r} must be 2-24 lower-case letters and digits, starting with a letter"
        )
    if target.exists() and any(target.iterdir()):
        raise ScaffoldError(f"{target} exists and is not empty")
    for rel, content in _files(slug).items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return target.resolve()
