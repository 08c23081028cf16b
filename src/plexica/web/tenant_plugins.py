"""A tenant admin's plugins: the catalog to install from and upgrade to (ADR 0241), enable,
disable, uninstall, and each one's settings form drawn from its manifest's settings schema."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import Response

from plexica.web.session import WebSession
from plexica.web.shell import (
    FRESH,
    NO_SUCH_ACTION,
    PageState,
    Shell,
    notice_redirect,
    redirect_or_page,
    save_or_page,
    tenant_nav,
)

SETTING_TYPES = {"string": "text", "integer": "number", "number": "number", "boolean": "checkbox"}


def tenant_plugin_routes(app: FastAPI, shell: Shell) -> None:
    _settings(app, shell)
    _plugins(app, shell)


def _settings_fields(schema: dict[str, Any], values: dict[str, Any]) -> list[dict[str, Any]]:
    """Form fields for the flat, simple-typed properties of a plugin's settings schema."""
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    fields = []
    for name, prop in props.items():
        if not isinstance(prop, dict) or prop.get("type") not in SETTING_TYPES:
            continue
        value = values.get(name, prop.get("default"))
        fields.append(
            {
                "name": name,
                "label": str(prop.get("title") or name.replace("_", " ").capitalize()),
                "type": prop["type"],
                "input": SETTING_TYPES[prop["type"]],
                "value": "" if value is None else value,
                "hint": prop.get("description"),
                "enum": prop.get("enum"),
            }
        )
    return fields


def _coerce_settings(
    fields: list[dict[str, Any]], form: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    out: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in fields:
        name, raw = f["name"], form.get(f["name"], "").strip()
        if f["type"] == "boolean":
            out[name] = raw == "on"
        elif raw == "":
            continue
        elif f["type"] in ("integer", "number"):
            try:
                out[name] = int(raw) if f["type"] == "integer" else float(raw)
            except ValueError:
                errors[name] = (
                    "Enter a number." if f["type"] == "number" else "Enter a whole number."
                )
        else:
            out[name] = raw
    return out, errors


async def _installed_fields(
    shell: Shell, session: WebSession, plugin_id: str
) -> tuple[str, list[dict[str, Any]]] | None:
    """The installation's API path and its settings form fields, or None when not installed."""
    tenant_id = await _tenant_id_of(shell, session)
    pid = quote(plugin_id, safe="")
    path = f"/v1/tenants/{tenant_id}/plugins/{pid}"
    got = await shell.upstream.api(session, "GET", path)
    versions = await shell.upstream.api(session, "GET", f"/v1/plugins/{pid}/versions")
    if not got.ok or not versions.ok or not isinstance(versions.body, list):
        return None
    manifest: dict[str, Any] = next(
        (v["manifest"] for v in versions.body if v["version"] == got.body["version"]), {}
    )
    return path, _settings_fields(manifest.get("settings_schema", {}), got.body["settings"])


async def _tenant_id_of(shell: Shell, session: WebSession) -> str | None:
    me = await shell.upstream.api(session, "GET", "/v1/tenant")
    return str(me.body["id"]) if me.ok and isinstance(me.body, dict) else None


async def _plugins_admin(
    shell: Shell, request: Request, session: WebSession, state: PageState = FRESH
) -> Response:
    nav, _ = await tenant_nav(shell, session)
    error = state.error
    tenant_id = await _tenant_id_of(shell, session)
    catalog: list[dict[str, Any]] = []
    if tenant_id:
        # One call for the whole page: each page view counts against the admin's rate limit.
        listed = await shell.upstream.api(session, "GET", f"/v1/tenants/{tenant_id}/catalog")
        if listed.ok and isinstance(listed.body, list):
            catalog = listed.body
        elif error is None:
            error = listed.error_message()
    installed = [e for e in catalog if e["install_status"]]
    return shell.form_page(
        request, session, "plugins.html", replace(state, error=error), title="Plugins", nav=nav,
        installed=installed, catalog=[e for e in catalog if e["latest_version"]],
    )  # fmt: skip


def _settings(app: FastAPI, shell: Shell) -> None:
    async def plugin_settings_page(
        request: Request, session: WebSession, state: PageState = FRESH, *, plugin_id: str
    ) -> Response:
        nav, _ = await tenant_nav(shell, session)
        found = await _installed_fields(shell, session, plugin_id)
        if found is None:
            return shell.page(
                request, session, "error.html", 404, title="Not found", nav=nav,
                message="This plugin is not installed in your organisation.",
            )  # fmt: skip
        fields = found[1]
        if state.form is not None:
            for f in fields:
                f["value"] = state.form.get(f["name"], "")
        return shell.form_page(
            request, session, "plugin_settings.html", state, title=f"{plugin_id} settings",
            nav=nav, plugin=plugin_id, fields=fields,
        )  # fmt: skip

    @app.get("/t/admin/plugins/{plugin_id}/settings", include_in_schema=False)
    async def admin_plugin_settings(request: Request, plugin_id: str) -> Response:
        return await shell.run(
            request, partial(plugin_settings_page, plugin_id=plugin_id), operator=False
        )

    @app.post("/t/admin/plugins/{plugin_id}/settings", include_in_schema=False)
    async def admin_plugin_settings_save(request: Request, plugin_id: str) -> Response:
        async def save(request: Request, session: WebSession) -> Response:
            raw = await request.form()
            form = {k: str(v) for k, v in raw.items() if k != "csrf"}
            found = await _installed_fields(shell, session, plugin_id)
            if found is None:
                return await plugin_settings_page(request, session, plugin_id=plugin_id)
            path, fields = found
            values, errors = _coerce_settings(fields, form)
            page = partial(plugin_settings_page, plugin_id=plugin_id)
            save = partial(
                shell.upstream.api, session, "PUT", f"{path}/settings", json={"settings": values}
            )
            return await save_or_page(
                request,
                session,
                page,
                form,
                errors,
                save=save,
                to=request.url.path,
                notice="Settings saved.",
            )

        return await shell.run(request, save, operator=False)


def _plugins(app: FastAPI, shell: Shell) -> None:
    shell.page_route(app, "/t/admin/plugins", partial(_plugins_admin, shell), operator=False)

    @app.post("/t/admin/plugins", include_in_schema=False)
    async def admin_install(request: Request) -> Response:
        async def install(request: Request, session: WebSession) -> Response:
            raw = await request.form()
            plugin = str(raw.get("plugin_id", "")).strip()
            version = str(raw.get("version", "")).strip() or None
            if not plugin:
                state = PageState(422, error="Choose a plugin to install.")
                return await _plugins_admin(shell, request, session, state)
            tenant_id = await _tenant_id_of(shell, session)
            done = await shell.upstream.api(
                session, "POST", f"/v1/tenants/{tenant_id}/plugins",
                json={"plugin_id": plugin, "version": version},
            )  # fmt: skip
            page = partial(_plugins_admin, shell)
            notice = f"Plugin {plugin} installed."
            return await redirect_or_page(
                request, session, done, page, to="/t/admin/plugins", notice=notice
            )

        return await shell.run(request, install, operator=False)

    @app.get("/t/admin/plugins/{plugin_id}/uninstall", include_in_schema=False)
    async def admin_uninstall_confirm(request: Request, plugin_id: str) -> Response:
        async def confirm(request: Request, session: WebSession) -> Response:
            nav, _ = await tenant_nav(shell, session)
            return shell.page(
                request, session, "confirm.html", title=f"Uninstall {plugin_id}", nav=nav,
                heading=f"Uninstall {plugin_id}?",
                warning="Its pages disappear now; its data is kept for the retention window.",
                action_url=f"/t/admin/plugins/{quote(plugin_id, safe='')}/uninstall",
                confirm_label="Yes, uninstall", danger=True, cancel_url="/t/admin/plugins",
            )  # fmt: skip

        return await shell.run(request, confirm, operator=False)

    @app.post("/t/admin/plugins/{plugin_id}/{action}", include_in_schema=False)
    async def admin_plugin_action(request: Request, plugin_id: str, action: str) -> Response:
        async def act(request: Request, session: WebSession) -> Response:
            if action not in ("enable", "disable", "uninstall", "upgrade"):
                return await _plugins_admin(shell, request, session, NO_SUCH_ACTION)
            tenant_id = await _tenant_id_of(shell, session)
            path = f"/v1/tenants/{tenant_id}/plugins/{quote(plugin_id, safe='')}"
            if action == "uninstall":
                done = await shell.upstream.api(session, "DELETE", path)
            elif action == "upgrade":
                version = str((await request.form()).get("version", "")).strip() or None
                done = await shell.upstream.api(
                    session, "POST", f"{path}/upgrade", json={"version": version}
                )
            else:
                done = await shell.upstream.api(session, "POST", f"{path}/{action}")
            if not done.ok:
                state = PageState(done.status, error=done.error_message())
                return await _plugins_admin(shell, request, session, state)
            notice = f"Plugin {plugin_id}: {action} done."
            if action == "upgrade" and isinstance(done.body, dict):
                notice = f"Plugin {plugin_id} upgraded to {done.body.get('version')}."
            return notice_redirect("/t/admin/plugins", notice)

        return await shell.run(request, act, operator=False)
