"""What the CRM's pages share: reading a form into a change, the edit and delete flows with
the ETag a form was rendered with (ADR 0226, 0230), the activity timeline and CSV imports."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from uuid import UUID

from fastapi import Query
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from plexica_crm import csvfile, service
from plexica_crm.schemas import (
    Activity,
    ActivityIn,
    CrmNotFoundError,
    ImportResult,
    Patch,
)
from plexica_sdk.app import PluginContext
from plexica_sdk.errors import PlexicaError, PreconditionFailedError, UnknownReferenceError
from plexica_sdk.preconditions import etag
from plexica_sdk.ui import Fragments, UploadError, back, field_errors, filled, uploaded

# What a person reads next to a field the server refused (the JSON API keeps pydantic's text).
FORM_MESSAGES = {
    "first_name": "Enter a first name (at most 100 characters).",
    "last_name": "At most 100 characters.",
    "email": "Enter an e-mail address such as name@example.com.",
    "phone": "At most 40 characters.",
    "title": "Enter a title (at most 200 characters).",
    "amount": "Enter an amount of 0 or more, with at most 2 decimals.",
    "currency": "Enter a currency code of three capital letters, such as EUR.",
    "stage_id": "Choose a stage.",
    "name": "Enter a name (at most 200 characters).",
    "domain": "At most 200 characters.",
    "company_id": "Choose one of the companies.",
    "contact_id": "Choose one of the contacts.",
    "kind": "Choose note, call or task.",
    "subject": "Enter a subject (at most 200 characters).",
    "body": "At most 20,000 characters.",
    # The activity as a whole: on a company's page, the contact it is about.
    "form": "Choose one of the company's contacts.",
}
CONFLICT = (
    "This {what} was changed by someone else since you opened it. Nothing was saved:"
    " here are its current values."
)
# The form field that carries the ETag the form was rendered with, sent on as If-Match.
IF_MATCH = "if_match"
ACTIVITY_KINDS = (("note", "Note"), ("call", "Call"), ("task", "Task"))
# Companies (or contacts) offered in a form's list: a small company's CRM.
CHOICES = 200

# What a redirect after a form tells the page it lands on (``?done=saved``).
Done = Annotated[str | None, Query(max_length=20)]

Show = Callable[[int, dict[str, str] | None, dict[str, str], str | None], Awaitable[Response]]


def values(record: Any, names: tuple[str, ...]) -> dict[str, str]:
    """A record's fields as a form shows them, with the ETag it is rendered with."""
    shown = {n: "" if getattr(record, n) is None else str(getattr(record, n)) for n in names}
    return {**shown, IF_MATCH: etag(record.version)}


def patch_of(model: type[Patch], form: dict[str, str], names: tuple[str, ...]) -> Patch:
    """Every field of an edit form: an empty one clears the field (null), except where the
    record has no null (it is then checked as given)."""
    given = {n: form[n] if n in model.NOT_NULL else (form[n] or None) for n in names if n in form}
    return model.model_validate(given)


def reference_error(exc: UnknownReferenceError) -> dict[str, str]:
    """The field of a record that no longer exists (or never did), with its message."""
    field = str((exc.details or {}).get("field", "form"))
    return {field: FORM_MESSAGES.get(field, str(exc))}


def gone(ui: Fragments, what: str, *, in_trash: bool = False) -> HTMLResponse:
    """404: the record was deleted; ``in_trash``: a restore found it no longer there."""
    return ui.render("gone.html", 404, what=what, in_trash=in_trash)


async def save(
    ui: Fragments,
    what: str,
    *,
    form: dict[str, str],
    change: Callable[[Patch, str], Awaitable[object]],
    parse: Callable[[], Patch],
    show: Show,
    to: str,
) -> Response:
    """An edit form's answer: the change applied if the record is still the version the form
    was rendered with, else the fresh values and nothing written (409)."""
    try:
        await change(parse(), form.get(IF_MATCH, ""))
    except ValidationError as exc:
        return await show(422, form, field_errors(exc, FORM_MESSAGES), None)
    except UnknownReferenceError as exc:
        return await show(422, form, reference_error(exc), None)
    except PreconditionFailedError:
        return await show(409, None, {}, CONFLICT.format(what=what))
    except CrmNotFoundError:
        return gone(ui, what)
    return back(to)


async def remove(
    ui: Fragments,
    what: str,
    *,
    form: dict[str, str],
    delete: Callable[[str], Awaitable[None]],
    show: Show,
    to: str,
) -> Response:
    try:
        await delete(form.get(IF_MATCH, ""))
    except PreconditionFailedError:
        return await show(409, None, {}, CONFLICT.format(what=what))
    except CrmNotFoundError:
        return gone(ui, what)
    return back(to)


async def company_choices(ctx: PluginContext) -> list[tuple[str, str]]:
    """The companies a form offers, as (id, name)."""
    if not ctx.has("crm:company:read"):
        return []
    return [
        (str(c.id), c.name) for c in (await service.list_companies(ctx, None, CHOICES, 0)).items
    ]


def uuid_or_none(text: str | None) -> UUID | None:
    try:
        return UUID(text) if text else None
    except ValueError:
        return None


async def timeline(
    ctx: PluginContext,
    *,
    contact_id: UUID | None = None,
    deal_id: UUID | None = None,
    company_id: UUID | None = None,
) -> list[Activity] | None:
    """The activities of a contact, deal or company, newest first; None when the user may not
    read them (the page leaves the timeline out)."""
    if not ctx.has("crm:activity:read"):
        return None
    if company_id is not None:
        return (await service.list_company_activities(ctx, company_id, CHOICES, 0)).items
    return (await service.list_activities(ctx, contact_id, deal_id, CHOICES, 0)).items


async def log_activity(
    ctx: PluginContext, form: dict[str, str], links: dict[str, UUID | None]
) -> dict[str, str]:
    """The activity of a timeline's form, linked to ``links``; the errors per field if none."""
    try:
        body = ActivityIn.model_validate({**filled(form, ("kind", "subject", "body")), **links})
        await service.create_activity(ctx, body)
    except ValidationError as exc:
        return field_errors(exc, FORM_MESSAGES)
    except UnknownReferenceError as exc:
        return reference_error(exc)
    return {}


def import_report(exc: PlexicaError) -> dict[str, Any]:
    """What the page lists of a refused CSV file: the message and each bad row's problems."""
    details = exc.details or {}
    lines = [
        f"Row {e['row']}" + (f", {e['field']}" if e.get("field") else "") + f": {e['message']}"
        for e in details.get("errors", [])
    ]
    for key, label in (("missing", "Missing"), ("duplicates", "Repeated"), ("unknown", "Unknown")):
        if details.get(key):
            lines.append(f"{label} columns: {', '.join(details[key])}")
    if details.get("columns") is not None:
        lines.append(f"Columns a file may have: {', '.join(details['columns'])}")
    return {"message": exc.message, "lines": lines}


async def run_import(
    form: dict[str, str], load: Callable[[bytes], Awaitable[ImportResult]]
) -> tuple[ImportResult | None, dict[str, Any] | None]:
    """The import of the form's ``file``: all its rows or, with the report, none (ADR 0226)."""
    try:
        content = uploaded(form, "file")
        if not content:
            return None, {"message": "Choose a CSV file to import.", "lines": []}
        return await load(content), None
    except (
        UploadError,
        csvfile.CsvError,
        csvfile.CsvHeaderError,
        csvfile.TooManyRowsError,
        csvfile.InvalidRowsError,
    ) as exc:
        return None, import_report(exc)
