"""CSV import and export of companies and contacts (ADR 0226).

An import is all or nothing: every row is checked with the model a create takes, the companies a
contact names are looked up, and only a file without a single bad row is written, in one
statement, with one ``…created`` event per record, in the request's transaction."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Sequence
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from plexica_crm import csvfile
from plexica_crm import repository as repo
from plexica_crm.schemas import Company, CompanyIn, Contact, ContactIn, ImportResult
from plexica_crm.service import announce_company, announce_contact
from plexica_sdk.app import PluginContext

COMPANY_COLUMNS = ("id", "name", "domain", "created_at")
CONTACT_COLUMNS = (
    "id", "first_name", "last_name", "email", "phone", "company_id", "company", "created_at",
)  # fmt: skip
# Columns an export adds that an import reads past: a re-imported export makes new records.
READ_ONLY = {"id", "created_at", "version"}


async def export_companies(ctx: PluginContext) -> str:
    return await _export(COMPANY_COLUMNS, repo.each_company(ctx.db))


async def export_contacts(ctx: PluginContext) -> str:
    return await _export(CONTACT_COLUMNS, repo.each_contact(ctx.db))


async def _export(columns: Sequence[str], batches: AsyncIterator[list[dict[str, Any]]]) -> str:
    """The header, even without a row, then ``columns`` of each row, a batch at a time."""
    out = io.StringIO()
    csvfile.write(columns, [], out)
    async for batch in batches:
        csvfile.write(columns, ([r[c] for c in columns] for r in batch), out)
    return out.getvalue()


async def import_companies(ctx: PluginContext, body: bytes) -> ImportResult:
    known = set(CompanyIn.model_fields)
    rows, errors = csvfile.read(body, required={"name"}, known=known, ignored=READ_ONLY)
    valid: list[CompanyIn] = []
    for number, cells in rows:
        try:
            valid.append(CompanyIn.model_validate(cells))
        except ValidationError as exc:
            errors.extend(csvfile.row_errors(number, exc))
    csvfile.refuse(errors)
    made = await repo.insert_companies(ctx.db, [c.model_dump() for c in valid], ctx.user_id)
    for row in made:
        await announce_company(ctx, Company.model_validate(row))
    return ImportResult(created=len(made))


async def import_contacts(ctx: PluginContext, body: bytes) -> ImportResult:
    """A contact's company is the ``company_id`` column if filled (an export's), else the one
    company whose name is the ``company`` column (case ignored)."""
    known = set(ContactIn.model_fields) | {"company"}
    rows, errors = csvfile.read(body, required={"first_name"}, known=known, ignored=READ_ONLY)
    valid: list[tuple[int, ContactIn, str | None]] = []
    for number, cells in rows:
        name = cells.pop("company", None)
        try:
            valid.append((number, ContactIn.model_validate(cells), name))
        except ValidationError as exc:
            errors.extend(csvfile.row_errors(number, exc))
    values = await _with_companies(ctx, valid, errors)
    csvfile.refuse(errors)
    made = await repo.insert_contacts(ctx.db, values, ctx.user_id)
    for row in made:
        await announce_contact(ctx, Contact.model_validate(row))
    return ImportResult(created=len(made))


async def _with_companies(
    ctx: PluginContext,
    valid: list[tuple[int, ContactIn, str | None]],
    errors: list[csvfile.RowError],
) -> list[dict[str, Any]]:
    ids = {c.company_id for _, c, _ in valid if c.company_id is not None}
    names = {n.lower() for _, c, n in valid if c.company_id is None and n}
    existing = await repo.companies_with_ids(ctx.db, ids) if ids else set()
    named = await repo.companies_named(ctx.db, names) if names else {}
    values = []
    for number, contact, name in valid:
        company_id: UUID | None = contact.company_id
        if company_id is not None and company_id not in existing:
            errors.append({"row": number, "field": "company_id", "message": "no such company"})
        elif company_id is None and name:
            found = named.get(name.lower(), [])
            if len(found) == 1:
                company_id = found[0]
            else:
                message = (
                    f"no company is named {name!r}"
                    if not found
                    else f"{len(found)} companies are named {name!r}: give company_id instead"
                )
                errors.append({"row": number, "field": "company", "message": message})
        values.append({**contact.model_dump(), "company_id": company_id})
    return values
