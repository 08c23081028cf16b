"""The pages of one company, contact or deal, alike for the three: the record with its edit
form, its delete confirmation and its activity timeline; and the CSV import and export of
companies and contacts (ADR 0230)."""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at runtime,
# and their dependencies (one permission per record) are local to ``record_routes``.
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from plexica_crm import forms, kinds, trash
from plexica_crm.api import csv_download
from plexica_crm.schemas import CrmNotFoundError, ImportResult, Patch
from plexica_crm.service import TRASH_DAYS
from plexica_sdk.app import FragmentsDep, PluginContext, require
from plexica_sdk.guard import body_limit
from plexica_sdk.preconditions import etag
from plexica_sdk.ui import UPLOAD_FORM_BYTES, Fragments, back, form_fields


class View(Protocol):
    """Renders a record's page: ``form`` None shows the record's current values."""

    async def __call__(
        self,
        ctx: PluginContext,
        ui: Fragments,
        record: Any,
        *,
        status: int = 200,
        form: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        alert: str | None = None,
        activity: dict[str, str] | None = None,
        activity_errors: dict[str, str] | None = None,
        notice: str | None = None,
    ) -> HTMLResponse: ...


Links = Callable[[PluginContext, UUID, dict[str, str]], Awaitable[dict[str, UUID | None]]]


@dataclass(frozen=True)
class Record:
    what: str  # "contact"
    path: str  # "contacts"
    fields: tuple[str, ...]  # what its edit form changes
    patch: type[Patch]
    get: Callable[[PluginContext, UUID], Awaitable[Any]]
    update: Callable[[PluginContext, UUID, Any, str | None], Awaitable[Any]]
    delete: Callable[[PluginContext, UUID, str | None], Awaitable[None]]
    view: View
    name: Callable[[Any], str]  # how a person calls it
    facts: Callable[[Any], list[tuple[str, str]]]  # shown before a delete
    links: Links  # what an activity logged on its page is linked to
    consequence: str  # what a delete also does
    kind: kinds.Kind[Any, Any]  # its trash


NOTICES = {
    "saved": "Saved.",
    "logged": "Activity logged.",
    "restored": "Restored.",
}


def record_routes(router: APIRouter, r: Record) -> None:
    read = require(f"crm:{r.what}:read")
    write = require(f"crm:{r.what}:write")
    log = require("crm:activity:write")

    def confirm(
        ui: Fragments, record: Any, status: int = 200, alert: str | None = None
    ) -> HTMLResponse:
        return ui.render(
            "confirm_delete.html", status, what=r.what, path=r.path, record=record,
            name=r.name(record), facts=r.facts(record), if_match=etag(record.version),
            consequence=r.consequence, alert_text=alert, days=TRASH_DAYS,
        )  # fmt: skip

    @router.get(f"/{r.path}/{{record_id}}", response_class=HTMLResponse)
    async def page(
        record_id: UUID,
        ctx: Annotated[PluginContext, Depends(read)],
        ui: FragmentsDep,
        done: forms.Done = None,
    ) -> HTMLResponse:
        record = await r.get(ctx, record_id)
        return await r.view(ctx, ui, record, notice=NOTICES.get(done or ""))

    @router.post(f"/{r.path}/{{record_id}}", response_class=HTMLResponse)
    async def edit(
        record_id: UUID,
        request: Request,
        ctx: Annotated[PluginContext, Depends(write)],
        ui: FragmentsDep,
    ) -> Response:
        form = await form_fields(request)

        async def show(
            status: int, shown: dict[str, str] | None, errors: dict[str, str], alert: str | None
        ) -> Response:
            try:
                record = await r.get(ctx, record_id)
            except CrmNotFoundError:
                return forms.gone(ui, r.what)
            # ``shown``: the user's input again, with the tag it was made from; None: the
            # current values with the current tag.
            return await r.view(
                ctx, ui, record, status=status, form=shown, errors=errors, alert=alert
            )

        async def change(patch: Patch, if_match: str) -> None:
            await r.update(ctx, record_id, patch, if_match)

        return await forms.save(
            ui, r.what, form=form, change=change,
            parse=lambda: forms.patch_of(r.patch, form, r.fields), show=show,
            to=f"ui/{r.path}/{record_id}?done=saved",
        )  # fmt: skip

    @router.get(f"/{r.path}/{{record_id}}/delete", response_class=HTMLResponse)
    async def ask(
        record_id: UUID, ctx: Annotated[PluginContext, Depends(write)], ui: FragmentsDep
    ) -> HTMLResponse:
        return confirm(ui, await r.get(ctx, record_id))

    @router.post(f"/{r.path}/{{record_id}}/delete", response_class=HTMLResponse)
    async def delete(
        record_id: UUID,
        request: Request,
        ctx: Annotated[PluginContext, Depends(write)],
        ui: FragmentsDep,
    ) -> Response:
        form = await form_fields(request)

        async def show(
            status: int, _: dict[str, str] | None, __: dict[str, str], alert: str | None
        ) -> Response:
            return confirm(ui, await r.get(ctx, record_id), status, alert)

        async def gone(if_match: str) -> None:
            await r.delete(ctx, record_id, if_match)

        return await forms.remove(
            ui, r.what, form=form, delete=gone, show=show,
            to=f"ui/{r.path}?done=deleted&undo={record_id}",
        )  # fmt: skip

    @router.post(f"/{r.path}/{{record_id}}/restore", response_class=HTMLResponse)
    async def restore(
        record_id: UUID, ctx: Annotated[PluginContext, Depends(write)], ui: FragmentsDep
    ) -> Response:
        try:
            await trash.restore(ctx, r.kind, record_id)
        except CrmNotFoundError:
            return forms.gone(ui, r.what, in_trash=True)
        return back(f"ui/{r.path}/{record_id}?done=restored")

    @router.post(f"/{r.path}/{{record_id}}/activities", response_class=HTMLResponse)
    async def add_activity(
        record_id: UUID,
        request: Request,
        ctx: Annotated[PluginContext, Depends(log)],
        ui: FragmentsDep,
    ) -> Response:
        form = await form_fields(request)
        record = await r.get(ctx, record_id)
        links = await r.links(ctx, record_id, form)
        errors = await forms.log_activity(ctx, form, links)
        if errors:
            return await r.view(ctx, ui, record, status=422, activity=form, activity_errors=errors)
        return back(f"ui/{r.path}/{record_id}?done=logged#activities")


def transfer_routes(
    router: APIRouter,
    what: str,
    path: str,
    *,
    export: Callable[[PluginContext], Awaitable[str]],
    load: Callable[[PluginContext, bytes], Awaitable[ImportResult]],
    refused: Callable[[PluginContext, Fragments, dict[str, Any] | None], Awaitable[Response]],
) -> None:
    """``ui/<path>/export``, a CSV download, and ``ui/<path>/import``, the form's file imported
    whole or ``refused`` shows the list page with the report; before the record routes, whose
    ``<path>/{id}`` would take ``export`` for an id."""
    read = require(f"crm:{what}:read")
    write = require(f"crm:{what}:write")

    @router.get(f"/{path}/export")
    async def export_csv(ctx: Annotated[PluginContext, Depends(read)]) -> Response:
        return csv_download(await export(ctx), f"{path}.csv")

    @router.post(f"/{path}/import", response_class=HTMLResponse)
    @body_limit(UPLOAD_FORM_BYTES)
    async def import_csv(
        request: Request, ctx: Annotated[PluginContext, Depends(write)], ui: FragmentsDep
    ) -> Response:
        form = await form_fields(request)
        result, report = await forms.run_import(form, lambda content: load(ctx, content))
        if result is None:
            return await refused(ctx, ui, report)
        return back(f"ui/{path}?imported={result.created}")
